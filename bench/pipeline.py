"""Per-stage and end-to-end speed on this machine, ours and (optionally) the reference's, side by side.

    python bench/pipeline.py [--frames 4] [--steps 50] [--device cuda] [--precision auto] [--reference PATH]
                             [--reference-as-shipped]   (or DITTO_REFERENCE=PATH)

Runs on a fake release at the official network sizes (random weights cost what trained ones do) with the shipped
sample portrait. Our warp and decoder figures use the render's precision (``--precision``, default auto: see
ditto_core/precision.py; bench/precision.py sets the precisions side by side with their image differences).
PATH is a local checkout of antgroup/ditto-talkinghead (never vendored here); with it the same stages run through
the reference's own code on the same inputs and the ratios are printed: its networks at fp32 (the modules inside
its wrappers, called as the wrappers call them but without their fp16 autocast, under which one warp call takes
over an hour on a CPU), or with ``--reference-as-shipped`` its wrappers as they are. Audio encoding is measured
separately by bench/audio_features.py (the fake release's HuBERT is a stand-in).
"""

from __future__ import annotations

import argparse
import os
import resource
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

from ditto_core.motion import Motion  # noqa: E402
from ditto_core.motion.sampler import WindowSampler, first_frame_vector  # noqa: E402
from ditto_core.pipeline import DittoPipeline  # noqa: E402
from ditto_core.portrait import FacePlacement  # noqa: E402
from ditto_core.precision import PRECISIONS, DeviceDescription, precision_plan  # noqa: E402
from ditto_core.render import RenderOptions, faces_to_frames  # noqa: E402
from ditto_core.testing.fake_release import write_fake_release  # noqa: E402
from ditto_core.video import write_mp4  # noqa: E402

CPU_TARGET_RATIO = 1.5


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    if torch.backends.mps.is_available():
        torch.mps.synchronize()


def timed(fn, repeats: int = 1, warm_up: bool = True) -> float:
    if warm_up:
        fn()
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize()
    return (time.perf_counter() - start) / repeats


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(root: Path, frames: int, steps: int, device: str, render: RenderOptions) -> dict[str, float]:
    pipe = DittoPipeline.load(root, device)
    image = cv2.cvtColor(cv2.imread(str(ROOT / "assets" / "portrait.jpg")), cv2.COLOR_BGR2RGB)
    portrait = pipe.register(image)
    nets = pipe.networks
    plan = precision_plan(DeviceDescription.of(device), render.precision)
    cond = torch.randn(80, nets.lmdm.config.cond_dim)
    sampler = WindowSampler(nets.lmdm, steps, seed=0)
    first = first_frame_vector(portrait.keypoints)
    x_s = portrait.source_keypoints().to(device)
    x_d = x_s + 0.01 * torch.randn_like(x_s)
    f_s = portrait.appearance.to(device)

    def warp():
        with plan.autocast("warp_network", nets.device.type):
            return nets.warp_network(f_s, x_s, x_d)

    def decode():
        with plan.autocast("decoder", nets.device.type):
            return nets.decoder(warped)

    with torch.inference_mode():
        warped = warp()
        face = decode().float().clamp(0, 1).permute(0, 2, 3, 1)[:1]
    placement = FacePlacement.of(portrait, 0, 1)
    out = {}
    out["LMDM window (80 frames)"] = timed(lambda: sampler(first, cond))
    window = WindowSampler(nets.lmdm, steps, seed=0)(first, cond)
    nets.lmdm.batched_guidance = True  # the fast path: both guidance branches in one call
    out["LMDM window, guidance batched"] = timed(lambda: sampler(first, cond))
    batched = WindowSampler(nets.lmdm, steps, seed=0)(first, cond)
    nets.lmdm.batched_guidance = False
    print(f"LMDM window with batched guidance: max difference {(batched - window).abs().max().item():.2e} "
          f"(motion values up to {window.abs().max().item():.2f})")
    with torch.inference_mode():
        out["warp (per frame)"] = timed(warp)
        out["decode (per frame)"] = timed(decode)
    out["paste-back (per frame)"] = timed(lambda: next(faces_to_frames(face, placement)), 5)
    with tempfile.TemporaryDirectory() as tmp:
        still = next(faces_to_frames(face, placement))
        out["video encode (per frame)"] = timed(lambda: write_mp4(Path(tmp) / "v.mp4", [still] * 25), 1) / 25
        motion = Motion(torch.randn(frames, 265) * 0.1)
        start = time.perf_counter()
        write_mp4(Path(tmp) / "e2e.mp4", pipe.render(portrait, motion, render))
        out["render end to end (per frame)"] = (time.perf_counter() - start) / frames
    return out


def reference(path: Path, root: Path, steps: int, as_shipped: bool) -> dict[str, float]:
    sys.path.insert(0, str(path))
    from core.atomic_components.putback import PutBackNumpy
    from core.models.decoder import Decoder
    from core.models.modules import LMDM
    from core.models.warp_network import WarpNetwork

    models = root / "ditto_pytorch" / "models"
    lmdm = LMDM(audio_feat_dim=1103, device="cpu").load_model(str(models / "lmdm_v0.4_hubert.pth"))
    warp = WarpNetwork(str(models / "warp_network.pth"), device="cpu")
    decoder = Decoder(str(models / "decoder.pth"), device="cpu")
    put = PutBackNumpy()
    image = cv2.cvtColor(cv2.imread(str(ROOT / "assets" / "portrait.jpg")), cv2.COLOR_BGR2RGB)
    f_s = np.random.rand(1, 32, 16, 64, 64).astype(np.float32)
    kp = (np.random.rand(1, 21, 3).astype(np.float32) - 0.5)
    cond = torch.randn(1, 80, 1103)
    kp_cond = torch.randn(1, 265)
    out = {"LMDM window (80 frames)": timed(lambda: lmdm.ddim_sample(kp_cond, cond, steps))}
    if as_shipped:
        # Its wrappers run warp and decoder under fp16 autocast even on the CPU, which is very slow there: one
        # timed call each, no warm-up.
        start = time.perf_counter()
        warped = warp(f_s, kp, kp)
        out["warp (per frame)"] = time.perf_counter() - start
        out["decode (per frame)"] = timed(lambda: decoder(warped), warm_up=False)
    else:
        with torch.no_grad():
            inputs = [torch.from_numpy(a) for a in (f_s, kp, kp)]
            out["warp (per frame)"] = timed(lambda: warp.model(*inputs))
            warped = warp.model(*inputs)
            out["decode (per frame)"] = timed(lambda: decoder.model(warped))
    face = np.random.rand(512, 512, 3).astype(np.float32) * 255
    m_c2o = np.array([[0.6, 0, 50], [0, 0.6, 40], [0, 0, 1]], np.float32)
    out["paste-back (per frame)"] = timed(lambda: put(image, face, m_c2o), 5)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=4, help="frames rendered for the end-to-end figure")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4, help="frames rendered together (end-to-end figure)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="our warp and decoder's")
    parser.add_argument("--reference", default=os.environ.get("DITTO_REFERENCE"))
    parser.add_argument("--reference-as-shipped", action="store_true",
                        help="time the reference's wrappers with their fp16 autocast (hours per frame on a CPU)")
    args = parser.parse_args()
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "none used"
    print(f"load: {machine_load()}")
    print(f"machine: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"device {args.device} (GPU: {gpu}); official network sizes, {args.steps} steps; our precision "
          f"{args.precision} = {precision_plan(DeviceDescription.of(args.device), args.precision).precision}; "
          f"reference {'as shipped' if args.reference_as_shipped else 'networks at fp32'}")
    with tempfile.TemporaryDirectory() as tmp:
        root = write_fake_release(tmp)
        mine = ours(root, args.frames, args.steps, args.device,
                    RenderOptions(batch_size=args.batch_size, precision=args.precision))
        print(f"peak RAM (ours): {peak_rss_mb():.0f} MB")
        if args.device == "cuda":
            print(f"peak VRAM (ours): {torch.cuda.max_memory_allocated() / 2**20:.0f} MB (target ≤ 2560 MB)")
        for stage, seconds in mine.items():
            print(f"ours: {stage:34s} {seconds:10.3f} s", flush=True)
        theirs = reference(Path(args.reference), root, args.steps, args.reference_as_shipped) if args.reference else {}
    print(f"{'stage':34s} {'ours s':>10s} {'reference s':>12s} {'speed-up':>9s}")
    for stage, seconds in mine.items():
        ref = theirs.get(stage)
        ratio = f"{ref / seconds:8.2f}x" if ref else ""
        print(f"{stage:34s} {seconds:10.3f} {ref if ref else float('nan'):12.3f} {ratio:>9s}")
    window = mine["LMDM window (80 frames)"] / 70  # an offline window yields 70 new frames
    per_frame = mine["render end to end (per frame)"] + window
    print(f"end to end (ours): {1 / per_frame:.3f} frames/s ({per_frame:.2f} s per frame)")
    if theirs:
        ref_frame = sum(theirs[k] for k in ("warp (per frame)", "decode (per frame)", "paste-back (per frame)"))
        ref_frame += theirs["LMDM window (80 frames)"] / 70 + mine["video encode (per frame)"]
        ratio = ref_frame / per_frame
        print(f"end to end (reference stages + our encoder): {1 / ref_frame:.4f} frames/s; ours/reference = "
              f"{ratio:.2f}x (target ≥ {CPU_TARGET_RATIO}x on CPU: {'met' if ratio >= CPU_TARGET_RATIO else 'NOT met'})")


if __name__ == "__main__":
    main()
