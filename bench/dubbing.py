"""Dubbing a source video: what registering it holds in memory, and what making each frame's appearance at render
time costs next to the renderer.

    python bench/dubbing.py [--frames 100] [--side 1080]

Runs on a fake release at the official network sizes (random weights cost what trained ones do), with a synthetic
16:9 video of ``--frames`` frames at ``--side`` lines written to mp4 and read back as the command line reads it
(into a disk-backed array). Prints: registration time per frame; the bytes the registered Portrait holds in RAM
against what holding every frame's appearance volume and decoded frame would take; and per rendered frame, the
appearance extractor's time (the price of not holding the volumes) against the warp network's and decoder's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from load import machine_load  # noqa: E402  (bench/load.py)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ditto_core.pipeline import DittoPipeline  # noqa: E402
from ditto_core.portrait.registration import source_appearance  # noqa: E402
from ditto_core.testing.fake_release import write_fake_release  # noqa: E402
from ditto_core.video import write_mp4  # noqa: E402

VOLUME_BYTES = 32 * 16 * 64 * 64 * 4  # one frame's appearance volume, float32


def synthetic_video(path: Path, frames: int, side: int) -> None:
    """A moving, non-black 16:9 picture (the fake detector finds a face in any non-dark frame)."""
    height, width = side, side * 16 // 9
    yy, xx = np.mgrid[:height, :width]

    def frame(i: int) -> np.ndarray:
        base = np.stack([128 + 60 * np.sin(xx / 97 + c + i / 9) * np.cos(yy / 71 + 2 * c) for c in range(3)], -1)
        return base.astype(np.uint8)

    write_mp4(path, (frame(i) for i in range(frames)), fps=25.0)


def held_bytes(portrait) -> int:
    """Bytes the Portrait holds in RAM (its frames excluded when they are a disk-backed memmap)."""
    arrays = [portrait.image_to_crop, portrait.crop_to_image, portrait.eye_open, portrait.eye_ball,
              portrait.canonical_kp, portrait.landmarks, portrait.has_face]
    total = sum(a.nbytes for a in arrays) + sum(t.numel() * t.element_size() for t in portrait.keypoints.values())
    if not isinstance(portrait.images, np.memmap):
        total += portrait.images.nbytes
    return total


def timed(run, repeats: int = 3) -> float:
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--side", type=int, default=1080)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_fake_release(Path(tmp) / "release")
        video = Path(tmp) / "source.mp4"
        synthetic_video(video, args.frames, args.side)
        pipeline = DittoPipeline.load(root)
        print(f"load: {machine_load()}")
        print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}, official network sizes")

        start = time.perf_counter()
        portrait = pipeline.register_file(video, pipeline.registration_options(max_size=1920))
        seconds = time.perf_counter() - start
        frame_bytes = portrait.images[0].nbytes
        print(f"source: {portrait.num_frames} frames of {portrait.images.shape[2]}x{portrait.images.shape[1]}, "
              f"registered in {seconds:.1f} s ({seconds / portrait.num_frames * 1000:.0f} ms per frame)")
        held = held_bytes(portrait)
        eager = portrait.num_frames * (VOLUME_BYTES + frame_bytes)
        print(f"held in RAM: {held / 2**20:.1f} MiB; holding every appearance volume and decoded frame: "
              f"{eager / 2**20:.0f} MiB ({eager / held:.0f}x); frames on disk: "
              f"{portrait.images.nbytes / 2**20:.0f} MiB")

        networks, device = pipeline.networks, pipeline.networks.device
        sources = list(range(args.batch))
        with torch.inference_mode():
            appearance = source_appearance(portrait, sources, networks.appearance_extractor, device)
            x_s = portrait.source_keypoints()[sources]
            x_d = x_s + 0.01
            make = timed(lambda: source_appearance(portrait, sources, networks.appearance_extractor, device))
            warp = timed(lambda: networks.warp_network(appearance, x_s, x_d))
            warped = networks.warp_network(appearance, x_s, x_d)
            decode = timed(lambda: networks.decoder(warped))
        per = args.batch
        print(f"per frame (batch {per}, fp32): appearance made at render {make / per * 1000:.0f} ms; warp "
              f"{warp / per * 1000:.0f} ms; decoder {decode / per * 1000:.0f} ms; appearance / (warp + decoder) = "
              f"{make / (warp + decode):.3f}")


if __name__ == "__main__":
    main()
