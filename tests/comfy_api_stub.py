"""A stand-in for the part of ComfyUI 0.33's V3 node API (``comfy_api.latest``: ``io``, ``ComfyExtension``)
the pack uses, so CI, which has no ComfyUI, defines and calls the nodes as ComfyUI does.

It follows ``comfy_api/latest/_io.py`` where that matters to the tests: each input's ``as_dict``, the V1 view ComfyUI
serves at ``/object_info`` and validates against (``INPUT_TYPES()``: ``(io_type, options)`` per input, combos as
``("COMBO", {"options": […]})``), ``RETURN_TYPES`` and friends derived from the schema's outputs, and
``EXECUTE_NORMALIZED`` turning what ``execute`` returns into a ``NodeOutput``.
"""

from __future__ import annotations

import types
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


def prune_dict(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class Input:
    io_type = None

    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, extra_dict=None,
                 raw_link=None, advanced=None):
        self.id, self.display_name, self.optional, self.tooltip = id, display_name, optional, tooltip
        self.lazy, self.extra_dict, self.raw_link, self.advanced = lazy, extra_dict or {}, raw_link, advanced

    def as_dict(self) -> dict:
        return prune_dict({"display_name": self.display_name, "optional": self.optional, "tooltip": self.tooltip,
                           "lazy": self.lazy, "rawLink": self.raw_link, "advanced": self.advanced}) | prune_dict(
            self.extra_dict)

    def get_io_type(self) -> str:
        return self.io_type


class WidgetInput(Input):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None, socketless=None,
                 widget_type=None, force_input=None, extra_dict=None, raw_link=None, advanced=None, **options):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link, advanced)
        self.default, self.socketless, self.widget_type, self.force_input = default, socketless, widget_type, force_input
        # the type's own keywords (min, max, step, multiline, label_on, …), as ComfyUI spells them in as_dict
        self.options = {_SPELLING.get(name, name): value for name, value in options.items()}

    def as_dict(self) -> dict:
        return super().as_dict() | prune_dict({"default": self.default, "socketless": self.socketless,
                                               "widgetType": self.widget_type, "forceInput": self.force_input,
                                               **self.options})


_SPELLING = {"display_mode": "display", "dynamic_prompts": "dynamicPrompts"}


class Output:
    io_type = None

    def __init__(self, id=None, display_name=None, tooltip=None, is_output_list=False):
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name or id, tooltip, is_output_list


def _comfy_type(io_type: str, input_base=Input, output_base=Output):
    """A ComfyType: a namespace with ``Input`` and ``Output`` classes bound to ``io_type``."""
    return types.SimpleNamespace(io_type=io_type, Input=type("Input", (input_base,), {"io_type": io_type}),
                                 Output=type("Output", (output_base,), {"io_type": io_type}))


Boolean, Int, Float, String = (_comfy_type(t, WidgetInput) for t in ("BOOLEAN", "INT", "FLOAT", "STRING"))
Image, Mask, Audio, Video = (_comfy_type(t) for t in ("IMAGE", "MASK", "AUDIO", "VIDEO"))


def Custom(io_type: str):  # noqa: N802 (ComfyUI's name)
    return _comfy_type(io_type)


class _ComboInput(WidgetInput):
    def __init__(self, id, options=None, display_name=None, optional=False, tooltip=None, lazy=None, default=None,
                 control_after_generate=None, socketless=None, extra_dict=None, raw_link=None, advanced=None):
        super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, None, extra_dict,
                         raw_link, advanced, multiselect=False, options=options,
                         control_after_generate=control_after_generate)


Combo = _comfy_type("COMBO", _ComboInput)


class _CurveInput(WidgetInput):
    def __init__(self, id, display_name=None, optional=False, tooltip=None, socketless=True, default=None,
                 advanced=None):
        super().__init__(id, display_name, optional, tooltip, None, default or [(0.0, 0.0), (1.0, 1.0)], socketless,
                         advanced=advanced)

    def as_dict(self) -> dict:
        return super().as_dict() | {"default": {"points": [list(p) for p in self.default],
                                                "interpolation": "monotone_cubic"}}


Curve = _comfy_type("CURVE", _CurveInput)


def _v1_inputs(inputs: list[Input]) -> dict:
    """``create_input_dict_v1``: ``{"required": {id: (type, options)}, "optional": …}`` in schema order."""
    spec = {"required": {}}
    for item in inputs:
        options = item.as_dict()
        options.pop("optional", None)
        spec.setdefault("optional" if item.optional else "required", {})[item.id] = (item.get_io_type(), options)
    return spec


class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"


@dataclass
class Schema:
    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    hidden: list = field(default_factory=list)
    description: str = ""
    search_aliases: list = field(default_factory=list)
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    not_idempotent: bool = False
    essentials_category: str = None
    has_intermediate_output: bool = False

    def validate(self):
        for ids in ([i.id for i in self.inputs], [o.id for o in self.outputs]):
            if len(set(ids)) != len(ids):
                raise ValueError(f"{self.node_id}: ids must be unique: {ids}")
        if self.is_output_node:
            self.hidden = [*self.hidden, Hidden.prompt, Hidden.extra_pnginfo]


class classproperty:  # noqa: N801 (ComfyUI's name)
    def __init__(self, f):
        self.f = f

    def __get__(self, obj, owner):
        return self.f(owner)


class ComfyNode:
    """The V3 node base, with the V1 view ComfyUI derives from the schema."""

    @classmethod
    @abstractmethod
    def define_schema(cls) -> Schema: ...

    @classmethod
    @abstractmethod
    def execute(cls, **kwargs): ...

    @classmethod
    def FINALIZE_SCHEMA(cls) -> Schema:  # noqa: N802
        """``define_schema`` checked, storing nothing on the class (ComfyUI runs ``execute`` on a locked copy of it,
        where GET_SCHEMA's storing of the schema fails)."""
        schema = cls.define_schema()
        schema.validate()
        return schema

    @classmethod
    def GET_SCHEMA(cls) -> Schema:  # noqa: N802
        """As ComfyUI's: the finalized schema, stored on the class."""
        schema = cls.FINALIZE_SCHEMA()
        cls.SCHEMA = schema
        return schema

    @classmethod
    def INPUT_TYPES(cls) -> dict:  # noqa: N802
        schema = cls.GET_SCHEMA()
        spec = _v1_inputs(schema.inputs)
        if schema.hidden:
            spec["hidden"] = {h.name: (h.value,) for h in schema.hidden}
        return spec

    FUNCTION = "EXECUTE_NORMALIZED"
    DESCRIPTION = classproperty(lambda cls: cls.GET_SCHEMA().description)
    CATEGORY = classproperty(lambda cls: cls.GET_SCHEMA().category)
    OUTPUT_NODE = classproperty(lambda cls: cls.GET_SCHEMA().is_output_node)
    HAS_INTERMEDIATE_OUTPUT = classproperty(lambda cls: cls.GET_SCHEMA().has_intermediate_output)
    INPUT_IS_LIST = classproperty(lambda cls: cls.GET_SCHEMA().is_input_list)
    OUTPUT_IS_LIST = classproperty(lambda cls: [o.is_output_list for o in cls.GET_SCHEMA().outputs])
    RETURN_TYPES = classproperty(lambda cls: [o.io_type for o in cls.GET_SCHEMA().outputs])
    RETURN_NAMES = classproperty(lambda cls: [o.display_name or o.io_type for o in cls.GET_SCHEMA().outputs])
    OUTPUT_TOOLTIPS = classproperty(lambda cls: [o.tooltip for o in cls.GET_SCHEMA().outputs])

    @classmethod
    def EXECUTE_NORMALIZED(cls, **kwargs) -> NodeOutput:  # noqa: N802
        returned = cls.execute(**kwargs)
        if returned is None:
            return NodeOutput()
        if isinstance(returned, NodeOutput):
            return returned
        if isinstance(returned, tuple):
            return NodeOutput(*returned)
        if isinstance(returned, dict):
            return NodeOutput(*returned.get("result", ()), ui=returned.get("ui"))
        raise TypeError(f"Invalid return type from node: {type(returned)}")


class NodeOutput:
    def __init__(self, *args, ui=None, expand=None, block_execution=None):
        self.args, self.ui, self.expand, self.block_execution = args, ui, expand, block_execution

    @property
    def result(self):
        return self.args if self.args else None

    def __getitem__(self, index):
        return self.args[index]


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        """Called once when ComfyUI loads the extension."""

    @abstractmethod
    async def get_node_list(self) -> list[type[ComfyNode]]: ...


class PreviewImage:
    """As ComfyUI's: the images ``[B, H, W, 3]`` (0-1) saved as PNGs in the temp folder, listed for the front end."""

    def __init__(self, image, animated: bool = False, cls=None, **kwargs):
        import folder_paths
        import numpy as np
        import PIL.Image

        folder = Path(folder_paths.get_temp_directory())
        folder.mkdir(parents=True, exist_ok=True)
        self.values = []
        for picture in image:
            name = f"ComfyUI_temp_{len(list(folder.glob('*.png'))):05}_.png"
            pixels = np.clip(picture.cpu().numpy() * 255.0, 0, 255).astype(np.uint8)
            PIL.Image.fromarray(pixels).save(folder / name)
            self.values.append({"filename": name, "subfolder": "", "type": "temp"})
        self.animated = animated

    def as_dict(self) -> dict:
        return {"images": self.values, "animated": (self.animated,)}


ui = types.SimpleNamespace(PreviewImage=PreviewImage)
