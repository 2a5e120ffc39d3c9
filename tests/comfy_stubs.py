"""Stand-ins for the few ComfyUI runtime modules the nodes import, so CI (which has no ComfyUI) can load the
pack the way ComfyUI does and call its node classes directly."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys
import types
from pathlib import Path

import comfy_api_stub

PACK_DIR = Path(__file__).resolve().parents[1]


class InterruptProcessingException(BaseException):
    """Like ComfyUI's: a BaseException, so ``except Exception`` does not swallow it."""


def install(base: Path) -> types.SimpleNamespace:
    """Register fake ``folder_paths``, ``comfy.model_management``, ``comfy.utils``, ``comfy_api.latest`` and
    ``comfyui_version`` modules with models/, input/ and output/ under ``base``."""
    import torch

    folders: dict[str, list[str]] = {}
    state = types.SimpleNamespace(folders=folders, progress=[], interrupt_after=None, interrupt_checks=0)

    folder_paths = types.ModuleType("folder_paths")
    folder_paths.models_dir = str(base / "models")
    folder_paths.get_output_directory = lambda: str(base / "output")
    folder_paths.get_temp_directory = lambda: str(base / "temp")
    folder_paths.get_input_directory = lambda: str(base / "input")
    (base / "output").mkdir(parents=True, exist_ok=True)
    (base / "input").mkdir(parents=True, exist_ok=True)

    def add_model_folder_path(name, path, is_default=False):
        paths = folders.setdefault(name, [])
        if path not in paths:
            paths.insert(0, path) if is_default else paths.append(path)

    folder_paths.add_model_folder_path = add_model_folder_path
    folder_paths.get_folder_paths = lambda name: list(folders.get(name, []))

    def get_input_subfolders():  # as ComfyUI's: every folder under input/, recursively, "/"-separated, sorted
        root = base / "input"
        return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_dir())

    folder_paths.get_input_subfolders = get_input_subfolders

    model_management = types.ModuleType("comfy.model_management")
    model_management.get_torch_device = lambda: torch.device("cpu")
    model_management.InterruptProcessingException = InterruptProcessingException

    def throw_exception_if_processing_interrupted():
        state.interrupt_checks += 1
        if state.interrupt_after is not None and state.interrupt_checks > state.interrupt_after:
            raise InterruptProcessingException()

    model_management.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted

    # model management as ComfyUI does it for ModelPatcher-wrapped models: load_models_gpu puts them on their load
    # device (offloading others when memory is short), unload_all_models puts every one back on its offload device
    state.loaded_models, state.load_calls = [], 0
    model_patcher = types.ModuleType("comfy.model_patcher")

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
            self.model, self.load_device, self.offload_device = model, load_device, offload_device
            self.size = size or sum(p.numel() * p.element_size() for p in model.parameters())
            if getattr(model, "device", None) is None:
                model.device = offload_device

        def model_size(self):
            return self.size

        def current_loaded_device(self):
            return self.model.device

        def load(self, device_to):
            self.model.to(device_to)
            self.model.device = device_to

        def partially_load(self, device_to, extra_memory=0):
            """As ComfyUI's: weights already on the device are left as they are (no load)."""
            if self.model.device != device_to:
                self.load(device_to)
            return 0

        def detach(self):
            self.load(self.offload_device)

    def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                        force_full_load=False):
        """ComfyUI's route: a model not among the loaded ones is loaded through partially_load, which returns early
        when its weights are still on the device (comfy/model_management.py LoadedModel.model_load)."""
        state.load_calls += 1
        for patcher in models:
            patcher.partially_load(patcher.load_device)
            if patcher not in state.loaded_models:
                state.loaded_models.append(patcher)

    def unload_all_models():
        for patcher in state.loaded_models:
            patcher.detach()
        state.loaded_models.clear()

    model_patcher.ModelPatcher = ModelPatcher
    model_management.load_models_gpu = load_models_gpu
    model_management.unload_all_models = unload_all_models
    model_management.unet_offload_device = lambda: torch.device("cpu")

    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total = total
            state.progress.append(self)
            self.value = 0

        def update_absolute(self, value, total=None, preview=None):
            self.value = value

        def update(self, n):
            self.value += n

    utils.ProgressBar = ProgressBar
    comfy = types.ModuleType("comfy")
    comfy.model_management, comfy.utils, comfy.model_patcher = model_management, utils, model_patcher

    latest = types.ModuleType("comfy_api.latest")

    class VideoComponents:
        def __init__(self, images, frame_rate, audio=None, metadata=None):
            self.images, self.frame_rate, self.audio = images, frame_rate, audio

    class VideoFromComponents:
        def __init__(self, components):
            self.components = components

        def get_components(self):
            return self.components

    latest.io, latest.ui, latest.ComfyExtension = comfy_api_stub, comfy_api_stub.ui, comfy_api_stub.ComfyExtension
    latest.Types = types.SimpleNamespace(VideoComponents=VideoComponents)
    latest.InputImpl = types.SimpleNamespace(VideoFromComponents=VideoFromComponents)
    comfy_api = types.ModuleType("comfy_api")
    comfy_api.latest = latest

    comfyui_version = types.ModuleType("comfyui_version")
    comfyui_version.__version__ = "0.33.0"  # the release comfy_api_stub follows

    sys.modules.update({"folder_paths": folder_paths, "comfy": comfy, "comfyui_version": comfyui_version, "comfy.model_management": model_management,
                        "comfy.utils": utils, "comfy.model_patcher": model_patcher, "comfy_api": comfy_api, "comfy_api.latest": latest})
    return state


def locked(node: type) -> type:
    """A copy of node class ``node`` whose class attributes cannot be set, as ComfyUI 0.33 runs ``execute``
    (comfy_api/internal: the locked clone raises on any class attribute set during a run)."""

    class Locked(type(node)):
        def __setattr__(cls, name, value):
            raise AttributeError(f"Cannot modify class attribute {name!r} on locked class {cls.__name__!r}")

    return Locked(f"{node.__name__}Clone", (node,), {})


def run_node(node, inputs: dict[str, list]) -> tuple[list[list], dict]:
    """Call the V3 node class ``node`` as ComfyUI 0.33's executor does (execution.py: ``_async_map_node_over_list``,
    ``get_output_from_returns``, ``merge_result_data``). Every input is a list: a link gives the list the source's
    output holds, a widget a list of one (use :func:`constants`). A node whose schema has is_input_list gets the
    lists in one call; any other is called once per index of the longest list, shorter lists repeating their last
    item.
    Returns one list per output (an is_output_list output's lists joined, any other one item per call) and the
    calls' ui dicts joined per key."""
    schema, call = node.GET_SCHEMA(), locked(node).EXECUTE_NORMALIZED
    if schema.is_input_list:
        returns = [call(**inputs)]
    else:
        count = max((len(values) for values in inputs.values()), default=0)
        returns = [call(**{name: values[min(index, len(values) - 1)] for name, values in inputs.items()})
                   for index in range(count)] if count else [call()]
    results = [r.result for r in returns if r.result is not None]
    uis = [r.ui if isinstance(r.ui, dict) else r.ui.as_dict() for r in returns if r.ui is not None]
    outputs = []
    for index, output in enumerate(schema.outputs if results else []):
        outputs.append([item for r in results for item in r[index]] if output.is_output_list
                       else [r[index] for r in results])
    ui = {key: [item for u in uis for item in u[key]] for key in uis[0]} if uis else {}
    return outputs, ui


def constants(**values) -> dict[str, list]:
    """Widget values as ComfyUI hands them to a node: each a list of one."""
    return {name: [value] for name, value in values.items()}


def load_pack(name: str = "comfyui_ditto_under_test") -> types.ModuleType:
    """Import the pack's ``__init__.py`` as a package, as ComfyUI's loader does (nodes.py: ``load_custom_node``)."""
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    spec = importlib.util.spec_from_file_location(
        name, PACK_DIR / "__init__.py", submodule_search_locations=[str(PACK_DIR)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def register(pack: types.ModuleType) -> dict[str, type]:
    """The pack's nodes by id, registered as ComfyUI 0.33's loader registers a V3 pack (nodes.py:
    ``load_custom_node``): ``comfy_entrypoint()`` gives a ComfyExtension, ``on_load()`` runs, then each class of
    ``get_node_list()`` is registered under its schema's node_id."""

    async def load():
        extension = await pack.comfy_entrypoint()
        assert isinstance(extension, comfy_api_stub.ComfyExtension)
        await extension.on_load()
        return {node.GET_SCHEMA().node_id: node for node in await extension.get_node_list()}

    return asyncio.run(load())


def combo_options(node, name: str) -> list:
    """The choices of ``node``'s combo input ``name``, as ComfyUI serves them (``("COMBO", {"options": […]})``)."""
    spec = node.INPUT_TYPES()
    kind, options = {**spec["required"], **spec.get("optional", {})}[name]
    assert kind == "COMBO", f"{name} is a {kind}, not a combo"
    return options["options"]


def validate_prompt_node(nodes: dict[str, type], prompt: dict, node_id: str) -> list[str]:
    """ComfyUI 0.33's checks of one node of an API prompt (execution.py: ``validate_inputs``), as messages: every
    required input given, each link's source output of the input's type (for our nodes' outputs), each constant cast
    to its type, within min/max or among the combo's options, and the node's own ``validate_inputs``. Also flags an
    input the node does not have, which ComfyUI would drop silently (a saved setting lost)."""
    entry = prompt[node_id]
    cls, given = nodes[entry["class_type"]], entry["inputs"]
    spec = cls.INPUT_TYPES()
    known = {**spec.get("optional", {}), **spec["required"]}
    errors = [f"{name}: not an input of {entry['class_type']}" for name in given if name not in known]
    constants = {}
    for name, (kind, options) in known.items():
        if name not in given:
            if name in spec["required"]:
                errors.append(f"{name}: required input missing")
            continue
        value = given[name]
        if isinstance(value, list):  # a link [source id, output slot]
            source = nodes.get(prompt[value[0]]["class_type"])
            if source is not None and source.RETURN_TYPES[value[1]] != kind:
                errors.append(f"{name}: linked to a {source.RETURN_TYPES[value[1]]} output, needs {kind}")
            constants[name] = None
            continue
        if kind == "COMBO" and value not in options["options"]:
            errors.append(f"{name}: {value!r} not among {options['options']}")
        if kind in ("INT", "FLOAT"):
            value = {"INT": int, "FLOAT": float}[kind](value)
            if not options.get("min", value) <= value <= options.get("max", value):
                errors.append(f"{name}: {value} outside {options.get('min')}..{options.get('max')}")
        constants[name] = value
    if "validate_inputs" in vars(cls):
        wanted = inspect.signature(cls.validate_inputs).parameters
        arguments = {name: value for name, value in constants.items() if name in wanted}
        if cls.GET_SCHEMA().is_input_list:
            arguments = {name: [value] for name, value in arguments.items()}
        answer = cls.validate_inputs(**arguments)
        if answer is not True:
            errors.append(f"validate_inputs: {answer}")
    return errors
