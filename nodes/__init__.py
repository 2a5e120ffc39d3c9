"""ComfyUI-Ditto's ComfyUI side. On a ComfyUI that can run the nodes (MINIMUM_COMFYUI or newer) it exports
``comfy_entrypoint`` and ``WEB_DIRECTORY``, which the pack's ``__init__.py`` passes on to ComfyUI's loader; on an
older one it logs one line naming the version needed and exports nothing, so nothing is registered."""

import logging

from .compat import MINIMUM_COMFYUI, running_comfyui

if running_comfyui() >= MINIMUM_COMFYUI:
    from .extension import comfy_entrypoint

    WEB_DIRECTORY = "./web"  # ComfyUI reads it from the pack's __init__.py, relative to the pack's folder
    __all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
else:
    logging.getLogger("ComfyUI-Ditto").warning(
        "ComfyUI-Ditto needs ComfyUI %s or newer (this is %s): update ComfyUI to use the Ditto nodes; none are "
        "registered.", ".".join(map(str, MINIMUM_COMFYUI)), ".".join(map(str, running_comfyui())) or "older")
    __all__ = []
