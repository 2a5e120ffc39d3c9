"""Our PyTorch implementation of the six networks of the Ditto release."""

from .loading import NETWORKS, CheckpointError, load_network

__all__ = ["NETWORKS", "CheckpointError", "load_network"]
