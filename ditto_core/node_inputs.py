"""Node inputs checked against what the node declares (ComfyUI's ``INPUT_TYPES`` data), for values that reach a node
without the front end's widgets: sent to ComfyUI's ``/prompt`` API by a script, or wired in from another node.
ComfyUI checks an unwired widget's type and range, but NaN passes its range check (``nan < min`` is False), an
input that the node's VALIDATE_INPUTS takes gets no range check, and a wired value is not checked at all; here
each becomes one error naming the node, the input and the value, before any work starts. Only plain widget types
are checked (INT, FLOAT, BOOLEAN, STRING, choices); objects passed between nodes (models, images, motion) are the
receiving code's to check."""

from __future__ import annotations

import math
from numbers import Integral, Real

SHOWN_CHOICES = 12  # a choice list (input/ folders, say) is cut after this many in a message


class NodeInputError(ValueError):
    """A value a node cannot take; the message names the node, the input and the value."""


def check_node_inputs(node: str, declared: dict, values: dict, as_lists: bool = False) -> None:
    """Raise NodeInputError for the first value in ``values`` outside its input in ``declared`` (``INPUT_TYPES()``:
    ``{"required": {name: (type, options)}, "optional": …}``). ``as_lists``: the node takes every input as a list
    (``INPUT_IS_LIST``), each item is checked."""
    inputs = {**declared.get("required", {}), **declared.get("optional", {})}
    for name, value in values.items():
        if name not in inputs or value is None:
            continue
        for item in (value if as_lists and isinstance(value, list) else [value]):
            problem = input_problem(inputs[name], item)
            if problem:
                shown = repr(item) if len(repr(item)) <= 80 else f"{repr(item)[:77]}..."
                raise NodeInputError(f"{node}: input '{name}' is {shown}; {problem}")


def input_problem(spec: tuple, value) -> str | None:
    """What is wrong with ``value`` for the input declared as ``spec``, or None."""
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if kind == "COMBO":  # the V3 form: ("COMBO", {"options": [...]})
        kind = list(options.get("options", []))
    if isinstance(kind, (list, tuple)):
        if isinstance(value, str) and value in kind:
            return None
        shown = ", ".join(map(str, kind[:SHOWN_CHOICES]))
        return f"choose one of {shown}" + (f", … ({len(kind)} in all)" if len(kind) > SHOWN_CHOICES else "")
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, Integral):
            return "it must be a whole number"
        return out_of_range(value, options)
    if kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            return "it must be a finite number"
        return out_of_range(value, options)
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else "it must be true or false"
    if kind == "STRING":
        return None if isinstance(value, str) else "it must be text"
    return None


def out_of_range(value, options: dict) -> str | None:
    low, high = options.get("min"), options.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        return f"it must be from {low if low is not None else '-∞'} to {high if high is not None else '∞'}"
    return None
