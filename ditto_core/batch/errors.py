"""The error that ends a batch as a whole."""

from __future__ import annotations


class BatchError(RuntimeError):
    """The batch cannot go on (no worker could start, or all of them died)."""
