"""Reduced precision on this device: its speed per stage and end to end, and its cost to the image, side by side
with fp32 in one run.

    python bench/precision.py [--models DIR] [--device cpu|cuda|mps] [--frames 8] [--batch-size 4] [--rounds 2]
                              [--precisions bf16,fp16] [--channels-last] [--compile]

Renders the same frames (motion sampled from the shipped speech, on the shipped portrait, pasted back) at fp32 and
at each reduced precision the device has fast kernels for (ditto_core/precision.py: bf16 on a CPU with native
bf16, fp16 and bf16 on CUDA, fp16 on MPS), with the render's default settings otherwise. Prints the seconds per
frame of each stage (stitching, warp, decoder: each network's calls inside the render, timed by hooks; paste-back:
timed on the rendered faces) and end to end (the render, frames out, without video encoding), then how far each
precision's frames are from fp32's in 8-bit levels (mean, 99.9th percentile, max) and PSNR, over the face (the
pixels the pasted face reaches) and over the whole frame, against the bound ``auto`` must meet.

Without --models it runs on a fake release at the official network sizes: random weights cost what trained ones
do, but their image differences are only a proxy; --models DIR (a release root, as for the render command) gives
the real weights' figures. Each figure is the fastest of --rounds rounds, and the precisions alternate within a
round, so a change in the machine's load hits them alike.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
from load import machine_load  # noqa: E402  (bench/load.py)
from pipeline import synchronize, timed  # noqa: E402  (bench/pipeline.py)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ditto_core.motion import SamplerOptions  # noqa: E402
from ditto_core.networks import compile_renderer  # noqa: E402
from ditto_core.pipeline import DittoPipeline  # noqa: E402
from ditto_core.portrait.paste import FacePlacement, blend_mask  # noqa: E402
from ditto_core.precision import (  # noqa: E402
    MAX_MEAN_LEVELS,
    MAX_P999_LEVELS,
    DeviceDescription,
    ImageDifference,
    auto_precision,
    fast_precisions,
)
from ditto_core.render import faces_to_frames, render_frames  # noqa: E402
from ditto_core.testing.fake_release import write_fake_release  # noqa: E402

NETWORK_STAGES = {"stitching": "stitch_network", "warp": "warp_network", "decoder": "decoder"}


class NetworkClock:
    """Seconds spent in each timed network's calls while it is attached (forward hooks, synchronised on GPUs).
    The first face the decoder makes is kept, for timing paste-back on it."""

    def __init__(self, networks):
        self.seconds: dict[str, float] = defaultdict(float)
        self.face: torch.Tensor | None = None
        self.hooks = []
        for stage, name in NETWORK_STAGES.items():
            module = getattr(networks, name)
            self.hooks.append(module.register_forward_pre_hook(lambda *_: self._start()))
            self.hooks.append(module.register_forward_hook(lambda _, __, out, stage=stage: self._stop(stage, out)))

    def _start(self) -> None:
        synchronize()
        self.started = time.perf_counter()

    def _stop(self, stage: str, out: torch.Tensor) -> None:
        synchronize()
        self.seconds[stage] += time.perf_counter() - self.started
        if stage == "decoder" and self.face is None:
            self.face = out[0].detach()

    def detach(self) -> None:
        for hook in self.hooks:
            hook.remove()


def render_timed(networks, portrait, motion, options) -> tuple[dict[str, float], np.ndarray]:
    """Seconds per frame of each stage and end to end, and the frames ``[N, H, W, 3]`` uint8."""
    clock = NetworkClock(networks)
    start = time.perf_counter()
    frames = np.stack(list(render_frames(networks, portrait, motion, options)))
    total = time.perf_counter() - start
    clock.detach()
    face = clock.face.float().clamp(0, 1).permute(1, 2, 0)[None]
    placement = FacePlacement.of(portrait, 0, 1)
    seconds = {stage: clock.seconds[stage] / len(motion) for stage in NETWORK_STAGES}
    seconds["paste-back"] = timed(lambda: next(faces_to_frames(face, placement)), 5)
    seconds["end to end (render)"] = total / len(motion)
    return seconds, frames


def to_channels_last(module: torch.nn.Module) -> None:
    """Convolution weights in channels-last order (4-D) or channels-last-3d (5-D), in place."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    for parameter in module.parameters():
        if parameter.dim() in formats:
            parameter.data = parameter.data.contiguous(memory_format=formats[parameter.dim()])


def face_region(portrait) -> np.ndarray:
    """bool ``[H, W]``: the pixels of the portrait the pasted face reaches."""
    h, w = portrait.images[0].shape[:2]
    return cv2.warpAffine(blend_mask(512), portrait.crop_to_image[0][:2].astype(np.float64), (w, h)) > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="a release root (default: a fake release at official sizes)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4, help="the render's default")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="diffusion steps for sampling the motion")
    parser.add_argument("--precisions", help="reduced precisions to compare (default: the device's fast ones)")
    parser.add_argument("--channels-last", action="store_true", help="warp and decoder weights channels-last")
    parser.add_argument("--compile", action="store_true", help="torch.compile the warp network and decoder")
    args = parser.parse_args()

    device = DeviceDescription.of(args.device)
    reduced = args.precisions.split(",") if args.precisions else fast_precisions(device)
    precisions = ["fp32", *reduced]
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "none used"
    print(f"load before: {machine_load()}")
    print(f"machine: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, device {args.device} (GPU: {gpu}); {device}")
    print(f"auto on this device: {auto_precision(device)}; compared: {', '.join(precisions)}; "
          f"release: {args.models or 'fake, official network sizes (random weights)'}; {args.frames} frames, "
          f"batch {args.batch_size}, best of {args.rounds} rounds; channels-last {args.channels_last}, "
          f"compile {args.compile}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        pipe = DittoPipeline.load(args.models or write_fake_release(tmp), args.device)
    portrait = pipe.register(cv2.cvtColor(cv2.imread(str(ROOT / "assets" / "portrait.jpg")), cv2.COLOR_BGR2RGB))
    _, features = pipe.encode_audio(ROOT / "assets" / "speech.wav")
    motion = pipe.sample(portrait, features, options=SamplerOptions(steps=args.steps)).slice(0, args.frames)
    if args.channels_last:
        for network in (pipe.networks.warp_network, pipe.networks.decoder):
            to_channels_last(network)
    networks = compile_renderer(pipe.networks) if args.compile else pipe.networks
    options = {p: pipe.render_options(batch_size=args.batch_size, precision=p) for p in precisions}

    for precision in precisions:  # warm-up: kernels chosen, compiled or cached
        next(render_frames(networks, portrait, motion.slice(0, args.batch_size), options[precision]))
    best: dict[str, dict[str, float]] = {p: {} for p in precisions}
    frames: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for precision in precisions:
            seconds, frames[precision] = render_timed(networks, portrait, motion, options[precision])
            for stage, value in seconds.items():
                best[precision][stage] = min(value, best[precision].get(stage, float("inf")))
    print(f"load after: {machine_load()}")

    print(f"\n{'seconds per frame':22s}" + "".join(f"{p:>10s}" for p in precisions)
          + "".join(f"{p + ' speed-up':>15s}" for p in reduced))
    for stage in best["fp32"]:
        row = f"{stage:22s}" + "".join(f"{best[p][stage]:10.4f}" for p in precisions)
        print(row + "".join(f"{best['fp32'][stage] / best[p][stage]:14.2f}x" for p in reduced))

    print(f"\ndifference from fp32 (8-bit levels)      {'mean':>7s} {'p99.9':>7s} {'max':>5s} {'PSNR dB':>8s}   "
          f"within the bound (face: mean < {MAX_MEAN_LEVELS:g}, p99.9 ≤ {MAX_P999_LEVELS:g})")
    face = face_region(portrait)
    for precision in reduced:
        for where, mask in (("face", face), ("whole frame", None)):
            d = ImageDifference.between(frames[precision], frames["fp32"], mask)
            verdict = ("yes" if d.within_bound else "NO") if where == "face" else ""
            print(f"{precision + ', ' + where:40s} {d.mean:7.3f} {d.p999:7.2f} {d.max:5.0f} {d.psnr:8.2f}   {verdict}")


if __name__ == "__main__":
    main()
