"""Peak memory against audio length, through the streamed speech → mp4 path (the CLI's and the Talking Head
Video node's): RAM (and VRAM on CUDA) must stay flat, 5 min ≤ 1.2× the 10 s figure.

    python bench/memory.py [--seconds 10 60 300] [--official] [--device cuda]

Each length runs in a fresh process (peak RSS is per process). The speech is the shipped sample, repeated to
length. By default the fake release has the small test networks, so a 5-minute clip renders in reasonable time on
a CPU; what could grow with the audio (audio, features, conditions, motion, frames in flight, the video encoder)
is the same code at any network size. ``--official`` uses official network sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from load import machine_load  # noqa: E402  (bench/load.py)

TARGET_RATIO = 1.2
VRAM_TARGET_MB = 2560


def child(seconds: float, release: str, device: str, out: str) -> dict:
    import cv2
    import numpy as np
    import torch

    from ditto_core.audio import load_audio
    from ditto_core.motion import SamplerOptions
    from ditto_core.pipeline import DittoPipeline
    from ditto_core.stream import speech_to_video

    pipeline = DittoPipeline.load(release, device)
    portrait = pipeline.register(cv2.cvtColor(cv2.imread(str(ROOT / "assets" / "portrait.jpg")), cv2.COLOR_BGR2RGB))
    speech = load_audio(ROOT / "assets" / "speech.wav")
    repeats = int(np.ceil(seconds * 16000 / len(speech.samples)))
    clip = load_audio(np.tile(speech.samples, repeats)[: int(seconds * 16000)], 16000)
    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    motion = speech_to_video(out, pipeline, portrait, clip, "neutral", SamplerOptions(steps=10))
    return {
        "seconds": seconds, "frames": len(motion), "wall_s": time.perf_counter() - start, "loaded_mb": loaded_mb,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "vram_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 60, 300])
    parser.add_argument("--official", action="store_true", help="official network sizes (slow on a CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--release", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(child(args.child, args.release, args.device, os.path.join(tmp, "out.mp4"))))
        return

    from ditto_core.testing.fake_release import write_fake_release

    sizes = "official" if args.official else "small test"
    print(f"load: {machine_load()}")
    print(f"machine: {os.cpu_count()} cores, device {args.device}; {sizes} network sizes, 10 steps; streamed path")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        release = write_fake_release(tmp, small=not args.official)
        for seconds in args.seconds:
            done = subprocess.run([sys.executable, __file__, "--child", str(seconds), "--release", str(release),
                                   "--device", args.device], capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(f"{row['seconds']:6.0f} s audio: {row['frames']:5d} frames in {row['wall_s']:7.1f} s, RAM after "
                  f"loading {row['loaded_mb']:6.0f} MB, peak {row['peak_mb']:6.0f} MB"
                  + (f", peak VRAM {row['vram_mb']:.0f} MB (target ≤ {VRAM_TARGET_MB} MB)"
                     if row["vram_mb"] is not None else ""), flush=True)
    base = rows[0]
    for row in rows[1:]:
        ratio = row["peak_mb"] / base["peak_mb"]
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(f"peak RAM {row['seconds']:.0f} s / {base['seconds']:.0f} s = {ratio:.3f}x (target ≤ {TARGET_RATIO}x: {verdict})")
        if row["vram_mb"] is not None:
            print(f"peak VRAM {row['seconds']:.0f} s / {base['seconds']:.0f} s = {row['vram_mb'] / base['vram_mb']:.3f}x")


if __name__ == "__main__":
    main()
