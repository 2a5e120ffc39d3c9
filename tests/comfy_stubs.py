"""Stand-ins for the few ComfyUI runtime modules the nodes import, so CI (which has no ComfyUI) can load the
pack the way ComfyUI does and call its node classes directly."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]


def install(models_dir: Path) -> types.SimpleNamespace:
    """Register fake ``folder_paths`` and ``comfy.model_management`` modules rooted at ``models_dir``."""
    folders: dict[str, list[str]] = {}

    folder_paths = types.ModuleType("folder_paths")
    folder_paths.models_dir = str(models_dir)

    def add_model_folder_path(name, path, is_default=False):
        paths = folders.setdefault(name, [])
        if path not in paths:
            paths.insert(0, path) if is_default else paths.append(path)

    folder_paths.add_model_folder_path = add_model_folder_path
    folder_paths.get_folder_paths = lambda name: list(folders.get(name, []))

    comfy = types.ModuleType("comfy")
    model_management = types.ModuleType("comfy.model_management")
    model_management.get_torch_device = lambda: __import__("torch").device("cpu")
    comfy.model_management = model_management

    sys.modules.update({"folder_paths": folder_paths, "comfy": comfy, "comfy.model_management": model_management})
    return types.SimpleNamespace(folder_paths=folder_paths, folders=folders)


def load_pack(name: str = "comfyui_ditto_under_test") -> types.ModuleType:
    """Import the pack's ``__init__.py`` as a package, as ComfyUI's loader does."""
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    spec = importlib.util.spec_from_file_location(
        name, PACK_DIR / "__init__.py", submodule_search_locations=[str(PACK_DIR)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
