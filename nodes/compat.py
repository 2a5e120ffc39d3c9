"""Which ComfyUI the nodes need: the first release with every part of the V3 node API they use (Schema's
has_intermediate_output, 0.19.0; before it: io.Curve, 0.16.0; essentials_category, 0.15.0; search_aliases, 0.10.0)."""

MINIMUM_COMFYUI = (0, 19, 0)


def running_comfyui() -> tuple[int, ...]:
    """The running ComfyUI's version (``comfyui_version.__version__``, e.g. (0, 33, 0)); () for a ComfyUI older
    than that file."""
    try:
        from comfyui_version import __version__
    except ImportError:
        return ()
    return tuple(int(part) for part in __version__.split(".")[:3] if part.isdigit())
