"""Writes the generated sample inputs in assets/ (see assets/README.md for what each file is):

    python assets/make_samples.py            # from the repository root, in an environment with requirements.txt

- driving.mp4: a 3-second, 25-fps driving video made from portrait.jpg by small affine warps (a gentle nod, a slight
  turn and tilt), h264 through PyAV.
- nod.safetensors: a procedural Motion whose anchor is a neutral frontal pose and whose frames nod and turn the
  head gently with no expression change, so relative driving gives a head nod on any portrait.
- portrait_2.jpg: matplotlib's grace_hopper.jpg, copied as it is (only when matplotlib is installed).

Running it again rewrites the same content (the motion bit for bit; the video up to the encoder's build).
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

FPS = 25
DRIVING_SECONDS = 3.0
DRIVING_SIZE = 384  # square crop around the face of portrait.jpg
FACE_CENTRE = (225.0, 125.0)  # portrait.jpg (512x512): the face's centre
PIVOT = (225.0, 230.0)  # the neck: the warps turn the picture about it
ZOOM = 1.05  # a little larger, so the turned picture still fills the crop
NOD_SECONDS = 4.0
NEUTRAL_SCALE = 1.5
POSE_SPREAD_BINS = 1.5  # standard deviation of the anchor's pose-bin distribution (3° bins)
MIN_LOG_PROB = -30.0  # the floor offset_pose puts under pose-bin log-probabilities


def driving_pose(t: float) -> tuple[float, float, float, float]:
    """(nod, turn, tilt, breath) of the synthetic driving video at ``t`` seconds: nod/turn/tilt in [-1, 1]."""
    ramp = min(1.0, t / 0.4) * min(1.0, (DRIVING_SECONDS - t) / 0.4)  # starts and ends at rest
    nod = math.sin(2 * math.pi * t / 1.5) * ramp
    turn = math.sin(2 * math.pi * t / DRIVING_SECONDS) * ramp
    tilt = math.sin(2 * math.pi * t / DRIVING_SECONDS + 1.0) * ramp
    return nod, turn, tilt, ramp


def driving_frames(portrait: Path):
    """RGB uint8 frames [S, S, 3]: the portrait turned about the neck by a few degrees, squashed a little
    vertically for the nod and horizontally for the turn, and cropped around the face."""
    from PIL import Image

    image = Image.open(portrait).convert("RGB")
    half = DRIVING_SIZE / 2
    left, top = FACE_CENTRE[0] - half, 16.0  # the crop keeps the picture's edges out of view
    for index in range(round(DRIVING_SECONDS * FPS)):
        nod, turn, tilt, _ = driving_pose(index / FPS)
        angle = math.radians(3.0 * tilt)
        sx, sy = ZOOM * (1.0 - 0.03 * abs(turn)), ZOOM * (1.0 - 0.035 * nod)
        dx, dy = 10.0 * turn, 8.0 * nod
        # forward map about the pivot: p' = pivot + R·S·(p − pivot) + d; PIL wants the inverse (output → input)
        cos, sin = math.cos(angle), math.sin(angle)
        forward = np.array([[cos * sx, -sin * sy], [sin * sx, cos * sy]])
        inverse = np.linalg.inv(forward)
        px, py = PIVOT
        # output pixel (u, v) in crop coordinates → image point q = (u + left, v + top)
        # input = pivot + inverse · (q − pivot − d)
        ox = -inverse @ np.array([px + dx, py + dy]) + np.array([px, py])
        a, b = inverse[0]
        d, e = inverse[1]
        c = a * left + b * top + ox[0]
        f = d * left + e * top + ox[1]
        frame = image.transform((DRIVING_SIZE, DRIVING_SIZE), Image.Transform.AFFINE, (a, b, c, d, e, f),
                                resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))
        yield np.asarray(frame, dtype=np.uint8)


def make_driving_video(portrait: Path, out: Path) -> Path:
    from ditto_core.video import VideoEncoding, write_mp4

    write_mp4(out, driving_frames(portrait), FPS, encoding=VideoEncoding(crf=23))
    return out


def neutral_anchor():
    """A [265] frame: scale 1.5, pose-bin distributions peaked at 0° (a Gaussian over the 66 3° bins, centred on
    bin 32.5, i.e. 0°), zero translation and zero expression."""
    import torch

    from ditto_core.motion.motion import FIELDS, MOTION_DIM

    anchor = torch.zeros(MOTION_DIM)
    anchor[FIELDS["scale"]] = NEUTRAL_SCALE - 1  # stored as scale − 1
    bins = torch.arange(66, dtype=torch.float32)
    probs = torch.softmax(-0.5 * ((bins - 32.5) / POSE_SPREAD_BINS) ** 2, dim=0)
    # tails floored as offset_pose floors them (log-probability −30), so a frame turned by 0° equals the anchor
    # and relative driving adds nothing from the tails
    logits = probs.clamp_min(math.exp(MIN_LOG_PROB)).log()
    for name in ("pitch", "yaw", "roll"):
        anchor[FIELDS[name]] = logits
    return anchor


def nod_curves(count: int):
    """Degrees per frame: two nods (pitch, 6° down and back) and a slow small turn (yaw ±4°), easing in and out."""
    import torch

    t = torch.arange(count, dtype=torch.float32) / FPS
    ease = torch.clamp(t / 0.5, max=1) * torch.clamp((NOD_SECONDS - t) / 0.5, max=1)
    pitch = 6.0 * torch.sin(math.pi * t / (NOD_SECONDS / 4)).clamp(min=0) * ease
    yaw = 4.0 * torch.sin(2 * math.pi * t / NOD_SECONDS) * ease
    return pitch, yaw


def nod_motion():
    from ditto_core.motion import Motion, controls

    count = round(NOD_SECONDS * FPS)
    anchor = neutral_anchor()
    still = Motion(anchor[None].repeat(count, 1), fps=float(FPS), anchor=anchor,
                   metadata={"source": "procedural: assets/make_samples.py",
                             "description": "neutral frontal anchor; two gentle nods and a slow small turn; "
                                            "no expression change"})
    pitch, yaw = nod_curves(count)
    return controls.offset_pose(still, pitch=pitch, yaw=yaw)


def make_nod_motion(out: Path) -> Path:
    nod_motion().save(out)
    return out


def copy_second_portrait(out: Path) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: portrait_2.jpg left as it is")
        return None
    source = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    shutil.copyfile(source, out)
    return out


def main() -> None:
    make_driving_video(HERE / "portrait.jpg", HERE / "driving.mp4")
    make_nod_motion(HERE / "nod.safetensors")
    copy_second_portrait(HERE / "portrait_2.jpg")
    for name in ("driving.mp4", "nod.safetensors", "portrait_2.jpg"):
        path = HERE / name
        if path.exists():
            print(f"{path.relative_to(HERE.parent)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
