"""Face editing on this device and these weights: the cost of one previewed frame, and what the motion extractor
reads back from rendered frames (each face control at its calibrated amount, and a clip's own motion).

    python bench/face.py [--models DIR] [--device cpu|cuda] [--batch-size 4] [--frames 8] [--small]

1. One frame: ``render_frame`` against the full render of the same motion (seconds, and whether the frame is
   identical), at batch size 1 and at --batch-size.
2. Read-back of the controls: the portrait's own motion (``motion_of_image``) edited by one control at a time
   (amount 1, and −1 for the two-sided ones), rendered, and read again with ``motion_of_image``; the change the
   extractor sees (from the unedited render's) is projected on the controls (``face_amounts``): "read" is the
   edited control's amount, "others" the largest amount of any other control, "residual" the part of the change
   no control explains, relative to the offset's size.
3. Read-back of a clip: --frames frames of motion sampled from the shipped speech are rendered, and each frame's
   motion is read from its image: head-pose error in degrees and the lips' expression error relative to the lips'
   movement (the motion extractor's accuracy on its own renders).

Without --models it runs on a fake release (random weights): the timings hold at the official sizes, the read-back
figures mean nothing there. With the real release they say whether 1 is a clear amount and whether the keypoint
directions are the ones named (a control read back near 1 with small "others").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ditto_core.motion import SamplerOptions  # noqa: E402
from ditto_core.motion.drive import LIP_KEYPOINTS  # noqa: E402
from ditto_core.motion.face import FACE_CONTROLS, edit_face, face_amounts  # noqa: E402
from ditto_core.motion.motion import FIELDS  # noqa: E402
from ditto_core.pipeline import DittoPipeline  # noqa: E402
from ditto_core.testing.fake_release import write_fake_release  # noqa: E402

PORTRAIT = ROOT / "assets" / "portrait.jpg"
SPEECH = ROOT / "assets" / "speech.wav"
LIP_COLUMNS = [3 * k + c for k in LIP_KEYPOINTS for c in range(3)]


def one_frame(pipeline, portrait, motion, batch_size: int) -> None:
    options = pipeline.render_options(batch_size=batch_size)
    start = time.perf_counter()
    full = list(pipeline.render(portrait, motion, options))
    full_s = time.perf_counter() - start
    index = 0  # in a full batch (the last one may be short)
    start = time.perf_counter()
    frame = pipeline.render_frame(portrait, motion, index, options)
    one_s = time.perf_counter() - start
    print(f"batch size {batch_size}: full render {full_s / len(motion):.2f} s/frame ({len(motion)} frames); "
          f"render_frame {one_s:.2f} s; identical to the full render's frame: {np.array_equal(frame, full[index])}")


def read_back_controls(pipeline, portrait, still) -> None:
    options = pipeline.render_options(batch_size=1)
    rest = pipeline.motion_of_image(pipeline.render_frame(portrait, still, 0, options)).field("exp")[0]
    print(f"{'control':<12}{'amount':>8}{'read':>8}{'others':>8}{'residual':>10}")
    for name, control in FACE_CONTROLS.items():
        for amount in (1.0, -1.0) if control.lower is not None or name == "smile" else (1.0,):
            edited = edit_face(still, **{name: amount})
            frame = pipeline.render_frame(portrait, edited, 0, options)
            change = pipeline.motion_of_image(frame).field("exp")[0] - rest
            read = {k: float(v[0]) for k, v in face_amounts(change[None]).items()}
            explained = sum(FACE_CONTROLS[k].offsets(torch.tensor([v]))[0] for k, v in read.items())
            residual = float((change - explained).norm() / edited.offsets[0].norm())
            others = max(abs(v) for k, v in read.items() if k != name)
            print(f"{name:<12}{amount:>8.2f}{read[name]:>8.2f}{others:>8.2f}{residual:>10.2f}")


def read_back_clip(pipeline, portrait, frames: int) -> None:
    clip, features = pipeline.encode_audio(SPEECH)
    motion = pipeline.sample(portrait, features, options=SamplerOptions(seed=0, steps=4)).slice(0, frames)
    rendered = list(pipeline.render(portrait, motion, pipeline.render_options(batch_size=1)))
    read = [pipeline.motion_of_image(f) for f in rendered]
    lips = motion.field("exp")[:, LIP_COLUMNS] - motion.anchor[FIELDS["exp"]][LIP_COLUMNS]
    for name in ("pitch", "yaw", "roll"):
        driven = motion.degrees(name) - motion.degrees(name)[0]
        seen = torch.cat([m.degrees(name) for m in read]) - read[0].degrees(name)[0]
        print(f"{name}: driven range {float(driven.abs().max()):.2f}°, read-back error "
              f"{float((seen - driven).abs().mean()):.2f}° mean, {float((seen - driven).abs().max()):.2f}° max")
    seen_lips = torch.cat([m.field("exp")[:, LIP_COLUMNS] for m in read]) - read[0].field("exp")[0, LIP_COLUMNS]
    error = float((seen_lips - lips).norm(dim=1).mean() / max(float(lips.norm(dim=1).mean()), 1e-8))
    print(f"lips: read-back error {error:.2f} of their mean movement")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, help="a release root (default: a fake release, random weights)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--small", action="store_true", help="a fake release with shrunken networks (a quick run)")
    args = parser.parse_args(argv)
    root = args.models or write_fake_release(tempfile.mkdtemp(prefix="ditto-face-"), small=args.small, seed=0)
    pipeline = DittoPipeline.load(root, device=args.device)
    portrait = pipeline.register(PORTRAIT)
    still = pipeline.motion_of_image(PORTRAIT)
    print(f"release: {root}{'' if args.models else ' (fake: random weights)'}; device {args.device}")
    print("\n1. One frame")
    edited = edit_face(still.held(args.batch_size + 1), smile=1)
    for batch_size in sorted({1, args.batch_size}):
        one_frame(pipeline, portrait, edited, batch_size)
    print("\n2. Controls read back from their renders")
    read_back_controls(pipeline, portrait, still)
    print(f"\n3. A clip's motion read back from its {args.frames} rendered frames")
    read_back_clip(pipeline, portrait, args.frames)


if __name__ == "__main__":
    main()
