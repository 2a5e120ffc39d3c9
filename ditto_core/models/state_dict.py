"""Reading architecture sizes out of a state dict, and strict loading with readable errors."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn


class CheckpointMismatch(ValueError):
    """The tensors of a file do not fit the network they are meant for."""


def shape_of(state_dict: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    """The shape of ``state_dict[key]``, or a CheckpointMismatch naming the missing key."""
    tensor = state_dict.get(key)
    if not isinstance(tensor, torch.Tensor):
        raise CheckpointMismatch(f"missing key {key!r}")
    return tuple(tensor.shape)


def count_indexed(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many consecutive children ``prefix0.``, ``prefix1.``, … have tensors in the state dict."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    count = 0
    while count in indices:
        count += 1
    if count == 0:
        raise CheckpointMismatch(f"missing keys {prefix}0.*")
    return count


_OPTIONAL_SUFFIXES = ("num_batches_tracked",)


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], max_listed: int = 5) -> None:
    """Copy ``state_dict`` into ``module``, requiring the exact key set and shapes.

    BatchNorm ``num_batches_tracked`` counters may be absent (they play no part in inference). Raises
    CheckpointMismatch listing the first missing keys, unexpected keys and shape mismatches.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith(_OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k}: file {tuple(state_dict[k].shape)}, network {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    not_tensor = [k for k in state_dict if not isinstance(state_dict[k], torch.Tensor)]
    problems = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", wrong_shape),
        ("entries that are not tensors", not_tensor),
    ):
        if items:
            shown = ", ".join(items[:max_listed]) + (f", … ({len(items)} in all)" if len(items) > max_listed else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise CheckpointMismatch("; ".join(problems))
    module.load_state_dict(state_dict, strict=False)
