"""Node inputs checked against the node's declared INPUT_TYPES, as a script posting to /prompt may send them."""

import math

import pytest

from ditto_core.node_inputs import NodeInputError, check_node_inputs

DECLARED = {
    "required": {
        "steps": ("INT", {"default": 10, "min": 1, "max": 50}),
        "fps": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 60.0}),
        "paste_back": ("BOOLEAN", {"default": True}),
        "prefix": ("STRING", {"default": "ditto"}),
        "stitching": (["as released", "on", "off"], {"default": "as released"}),
        "precision": ("COMBO", {"options": ["auto", "fp32"]}),  # the V3 form of a choice
        "models": ("DITTO_MODELS",),
    },
    "optional": {"seed": ("INT", {"min": 0})},
}
GOOD = dict(steps=10, fps=25, paste_back=False, prefix="a/b", stitching="on", precision="fp32", models=object(),
            seed=None)


def test_values_a_widget_can_hold_pass():
    check_node_inputs("DittoRender", DECLARED, GOOD)
    check_node_inputs("DittoRender", DECLARED, {**GOOD, "undeclared": "left to the node"})


@pytest.mark.parametrize("name, value, message", [
    ("steps", "10", "input 'steps' is '10'; it must be a whole number"),
    ("steps", 10.0, "input 'steps' is 10.0; it must be a whole number"),
    ("steps", True, "input 'steps' is True; it must be a whole number"),
    ("steps", 0, "input 'steps' is 0; it must be from 1 to 50"),
    ("fps", math.nan, "input 'fps' is nan; it must be a finite number"),
    ("fps", -math.inf, "input 'fps' is -inf; it must be a finite number"),
    ("fps", 1e308, "input 'fps' is 1e\\+308; it must be from 0.0 to 60.0"),
    ("paste_back", 1, "input 'paste_back' is 1; it must be true or false"),
    ("prefix", ["a"], "input 'prefix' is \\['a'\\]; it must be text"),
    ("stitching", "maybe", "input 'stitching' is 'maybe'; choose one of as released, on, off"),
    ("precision", "fp8", "input 'precision' is 'fp8'; choose one of auto, fp32"),
    ("seed", -1, "input 'seed' is -1; it must be from 0 to ∞"),
])
def test_each_bad_value_is_one_error_naming_the_node_the_input_and_the_value(name, value, message):
    with pytest.raises(NodeInputError, match=f"^DittoRender: {message}$"):
        check_node_inputs("DittoRender", DECLARED, {**GOOD, name: value})


def test_a_list_node_has_each_item_checked_and_long_values_and_choice_lists_are_cut():
    check_node_inputs("DittoTalkingHeadBatch", DECLARED, {"steps": [1, 2], "prefix": ["x"]}, as_lists=True)
    with pytest.raises(NodeInputError, match="input 'steps' is 99; it must be from 1 to 50"):
        check_node_inputs("DittoTalkingHeadBatch", DECLARED, {"steps": [1, 99]}, as_lists=True)
    folders = {"required": {"folder": ([f"f{i}" for i in range(30)],)}}
    with pytest.raises(NodeInputError, match=r"is 'xxxxx.*\.\.\.; choose one of f0, .*, f11, … \(30 in all\)$"):
        check_node_inputs("DittoLoadPortraits", folders, {"folder": "x" * 200})
