"""ComfyUI node classes (thin: every computation lives in ditto_core)."""

from .models import DittoLoadModels

NODE_CLASS_MAPPINGS = {
    "DittoLoadModels": DittoLoadModels,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "DittoLoadModels": "Load Ditto Models",
}
