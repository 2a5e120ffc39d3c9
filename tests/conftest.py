import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ditto_core.testing.fake_release import write_fake_release  # noqa: E402

torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))


@pytest.fixture(scope="session")
def small_release(tmp_path_factory) -> Path:
    """A fake release with shrunken networks (fast)."""
    return write_fake_release(tmp_path_factory.mktemp("small_release"), small=True, seed=1)


@pytest.fixture(scope="session")
def official_release(tmp_path_factory) -> Path:
    """A fake release whose every tensor has the official shape (about 700 MB on disk)."""
    return write_fake_release(tmp_path_factory.mktemp("official_release"), small=False, seed=2)
