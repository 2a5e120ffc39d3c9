"""ComfyUI-Ditto: audio-driven talking heads. ComfyUI loads this package and registers its nodes through
``comfy_entrypoint`` (ComfyUI's V3 node API); on a ComfyUI too old for them, nothing (nodes/__init__.py)."""

from .nodes import *  # noqa: F403 (comfy_entrypoint and WEB_DIRECTORY, on a ComfyUI that can run the nodes)
