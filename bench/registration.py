"""Portrait registration time per image at 512², 1024² and 4096².

    python bench/registration.py [--repeats 3]

Runs on a fake release at the official network sizes (random weights cost what trained ones do). The face models
are the fake release's stand-ins: the detector and landmark models there are tiny, so the figures cover image
handling, resizing, cropping and the two networks, not SCRFD's or the landmark models' own inference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from load import machine_load  # noqa: E402  (bench/load.py)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ditto_core.networks import load_networks  # noqa: E402
from ditto_core.portrait import load_face_models, register_portrait  # noqa: E402
from ditto_core.testing.fake_release import write_fake_release  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_fake_release(tmp)
        networks, face_models = load_networks(root), load_face_models(root)
        print(f"load: {machine_load()}")
        print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}, official network sizes")
        rng = np.random.default_rng(0)
        for side in (512, 1024, 4096):
            image = rng.integers(60, 200, (side, side, 3), dtype=np.uint8)
            register_portrait(image, networks.appearance_extractor, networks.motion_extractor, face_models)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                register_portrait(image, networks.appearance_extractor, networks.motion_extractor, face_models)
                times.append(time.perf_counter() - start)
            print(f"{side:5d}²: {statistics.median(times) * 1000:8.1f} ms per image (median of {args.repeats})")


if __name__ == "__main__":
    main()
