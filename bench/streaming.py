"""Streaming figures: the realtime session's first-frame delay and steady frame rate, and the streamed offline
path with its stages overlapped against the same path run one stage after the other.

    python bench/streaming.py [--seconds 6] [--official] [--device cuda] [--steps 10]

Speech is the shipped sample (repeated to length). In the realtime session it is pushed in 40-ms chunks at the
pace it would arrive from a microphone; the delay is counted from the first sample pushed. By default the fake
release has the small test networks (quick on a CPU); ``--official`` uses official network sizes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from load import machine_load  # noqa: E402  (bench/load.py)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ditto_core.audio import load_audio  # noqa: E402
from ditto_core.motion import SamplerOptions  # noqa: E402
from ditto_core.online import OnlineSession  # noqa: E402
from ditto_core.pipeline import DittoPipeline  # noqa: E402
from ditto_core.stream import speech_to_frames  # noqa: E402
from ditto_core.video import write_mp4  # noqa: E402
from ditto_core.testing.fake_release import write_fake_release  # noqa: E402

CUDA_TARGETS = {"first frame (s)": 0.25, "frames/s": 60.0}
CHUNK = 640  # 40 ms at 16 kHz


def realtime_session(pipeline, portrait, samples: np.ndarray, steps: int) -> dict:
    session = OnlineSession(pipeline, portrait, sampler=SamplerOptions(steps=steps, overlap=70))
    start = time.perf_counter()
    first_compute = None
    for offset in range(0, len(samples), CHUNK):
        arrival = offset / 16000  # when this chunk would have arrived from a microphone
        wait = start + arrival - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        pushed = time.perf_counter()
        if session.push(samples[offset : offset + CHUNK]) and first_compute is None:
            first_compute = time.perf_counter() - pushed
    session.finish()
    stats = session.stats
    return {"audio before the first frame (s)": stats.first_frame_audio_s,
            "first frame after speech starts (s)": stats.first_frame_wall_s,
            "compute after the audio arrived (s)": first_compute,
            "steady frames/s": stats.steady_fps, "frames": stats.frames}


def streamed_path(pipeline, portrait, clip, steps: int, overlap_stages: bool) -> float:
    """Frames per second, speech → mp4, the stages overlapped or one after another."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        frames = speech_to_frames(pipeline, portrait, clip, sampler=SamplerOptions(steps=steps),
                                  overlap_stages=overlap_stages)
        count = write_mp4(Path(tmp) / "out.mp4", frames, 25.0, clip, device_type=pipeline.networks.device.type)
        return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--official", action="store_true", help="official network sizes (slow on a CPU)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    sizes = "official" if args.official else "small test"
    print(f"load: {machine_load()}")
    print(f"machine: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, device {args.device}; {sizes} "
          f"network sizes, {args.steps} steps, {args.seconds:g} s of speech")
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = DittoPipeline.load(write_fake_release(tmp, small=not args.official), args.device)
    portrait = pipeline.register(cv2.cvtColor(cv2.imread(str(ROOT / "assets" / "portrait.jpg")), cv2.COLOR_BGR2RGB))
    speech = load_audio(ROOT / "assets" / "speech.wav")
    samples = np.tile(speech.samples, int(np.ceil(args.seconds * 16000 / len(speech.samples))))
    clip = load_audio(samples[: int(args.seconds * 16000)], 16000)

    online = realtime_session(pipeline, portrait, clip.samples, args.steps)
    print("realtime session (overlap 70, audio pushed in 40-ms chunks at speaking pace):")
    for name, value in online.items():
        print(f"  {name:38s} {value if value is None else round(value, 3)}")
    sequential = streamed_path(pipeline, portrait, clip, args.steps, overlap_stages=False)
    overlapped = streamed_path(pipeline, portrait, clip, args.steps, overlap_stages=True)
    print("speech → mp4 (offline chaining, overlap 10):")
    print(f"  stages one after another   {sequential:8.3f} frames/s")
    print(f"  stages overlapped          {overlapped:8.3f} frames/s   ({overlapped / sequential:.2f}x)")
    if args.device == "cuda":
        print(f"  CUDA targets: first frame ≤ {CUDA_TARGETS['first frame (s)']} s "
              f"(compute after the audio arrived), ≥ {CUDA_TARGETS['frames/s']} frames/s end to end")


if __name__ == "__main__":
    main()
