"""ComfyUI-Ditto: audio-driven talking heads. ComfyUI loads this package and registers its nodes through
``comfy_entrypoint`` (ComfyUI's V3 node API)."""

from .nodes import comfy_entrypoint

WEB_DIRECTORY = "./web"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
