"""Edits applied to sampled motion, as pure functions ``Motion → Motion``.

Face edits (smile, eyebrows, winks, a photo's expression) are in ``face.py`` and reachable here as
``edit_face`` and ``apply_reference``.

Each one names the values it changes and leaves every other value of every frame bit-identical. Amplitudes are
measured from the motion's anchor frame (the frame relative driving measures from), so "more" and "less" motion
mean more or less change from the source's own expression and pose.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..audio.clip import SAMPLE_RATE, AudioClip
from ..keypoints import shift_bins
from .drive import EYE_KEYPOINTS, LIP_KEYPOINTS, keypoint_mask
from .motion import FIELDS, Motion

POSE = ("pitch", "yaw", "roll")


def per_frame(value, count: int) -> torch.Tensor:
    """A number or a curve of ``count`` values → ``[count]`` float32."""
    curve = torch.as_tensor(value, dtype=torch.float32)
    if curve.ndim == 0:
        return curve.expand(count).clone()
    if curve.shape != (count,):
        raise ValueError(f"expected a number or one value per frame ({count}), got shape {tuple(curve.shape)}")
    return curve


def offset_pose(motion: Motion, pitch=0.0, yaw=0.0, roll=0.0) -> Motion:
    """Add degrees to head pitch/yaw/roll: a number for every frame or one value per frame (a curve)."""
    frames = motion.frames.clone()
    for name, value in zip(POSE, (pitch, yaw, roll)):
        offset = per_frame(value, len(motion))
        if bool((offset != 0).any()):
            frames[:, FIELDS[name]] = shift_bins(frames[:, FIELDS[name]], offset)
    return motion.with_frames(frames)


def scale_pose(motion: Motion, factor=1.0) -> Motion:
    """Multiply head-pose movement (pitch, yaw, roll, in degrees from the anchor) by ``factor``."""
    factor = per_frame(factor, len(motion))
    anchor = Motion(motion.anchor[None])
    offsets = {name: (factor - 1) * (motion.degrees(name) - anchor.degrees(name)) for name in POSE}
    return offset_pose(motion, **offsets)


def scale_expression(motion: Motion, factor=1.0, keypoints=None) -> Motion:
    """Multiply expression movement (from the anchor) of ``keypoints`` (default all 21) by ``factor``; the mouth
    is ``LIP_KEYPOINTS``."""
    factor = per_frame(factor, len(motion))[:, None]
    mask = keypoint_mask(range(21) if keypoints is None else keypoints)
    frames = motion.frames.clone()
    exp, anchor = frames[:, FIELDS["exp"]], motion.anchor[FIELDS["exp"]]
    frames[:, FIELDS["exp"]] = torch.where(mask.bool(), anchor + factor * (exp - anchor), exp)
    return motion.with_frames(frames)


def scale_mouth(motion: Motion, factor=1.0) -> Motion:
    """Multiply mouth movement by ``factor`` (0 closes it to the source's mouth, 1.5 opens it wider)."""
    return scale_expression(motion, factor, LIP_KEYPOINTS)


def freeze_eyes(motion: Motion) -> Motion:
    """Blinks off: the eye keypoints keep the anchor's expression in every frame."""
    return scale_expression(motion, 0.0, EYE_KEYPOINTS)


def offset_gaze(motion: Motion, horizontal=0.0, vertical=0.0) -> Motion:
    """Move the eyes (the reference's eye delta on keypoints 11 and 15): ``horizontal`` > 0 looks to the image's
    right, ``vertical`` > 0 looks up, in the reference's units (its gaze fix uses 0.26 per degree of yaw)."""
    dx, dy = per_frame(horizontal, len(motion)), per_frame(vertical, len(motion))
    frames = motion.frames.clone()
    exp = frames[:, FIELDS["exp"]]
    exp[:, 33] += torch.where(dx > 0, dx * 0.0007, dx * 0.001)
    exp[:, 45] += torch.where(dx > 0, dx * 0.001, dx * 0.0007)
    exp[:, 34] -= dy * 0.001
    exp[:, 46] -= dy * 0.001
    return motion.with_frames(frames)


def smooth(motion: Motion, window: int = 5, fields=("scale", "pitch", "yaw", "roll", "t")) -> Motion:
    """Centred moving average over ``window`` frames (truncated at the ends) of the named fields."""
    if window <= 1:
        return motion
    half = window // 2
    frames = motion.frames.clone()
    columns = torch.cat([torch.arange(FIELDS[n].start, FIELDS[n].stop) for n in fields])
    source = motion.frames[:, columns]
    frames[:, columns] = torch.stack([source[max(0, i - half) : i + half + 1].mean(0) for i in range(len(motion))])
    return motion.with_frames(frames)


def relax(motion: Motion, amount, fields=("exp",), toward: torch.Tensor | None = None) -> Motion:
    """Blend the named fields toward ``toward`` ``[265]`` (default: the anchor) by ``amount`` per frame (0:
    unchanged, 1: at rest)."""
    weight = per_frame(amount, len(motion)).clamp(0, 1)[:, None]
    target = motion.anchor if toward is None else toward
    frames = motion.frames.clone()
    for name in fields:
        span = FIELDS[name]
        frames[:, span] = frames[:, span] * (1 - weight) + target[span] * weight
    return motion.with_frames(frames)


FADE_TARGETS = ("source", "first frame")


def fade(motion: Motion, fade_in: int = 0, fade_out: int = 0, fields=("exp",), target: str = "source") -> Motion:
    """Ramp the named fields in over the first ``fade_in`` frames and out over the last ``fade_out`` frames (the
    reference's fade schedule), from and to ``target``: "source", the source's own face (the anchor; the
    reference's fade_type "s"), or "first frame", the motion's first frame (fade_type "d0", the release's)."""
    if target not in FADE_TARGETS:
        raise ValueError(f"fade target must be one of {', '.join(FADE_TARGETS)}, got {target!r}")
    n = len(motion)
    alpha = torch.ones(n)
    if fade_in > 0:
        ramp = torch.arange(min(fade_in, n), dtype=torch.float32) / fade_in
        alpha[: len(ramp)] = ramp
    if fade_out > 0:
        start, end = max(n - fade_out - 1, 0), n - 1
        idx = torch.arange(start, n, dtype=torch.float32)
        alpha[start:] = ((end - idx) / max(end - start, 1)).clamp(min=0)  # overrides the fade-in, as the reference
    return relax(motion, 1 - alpha, fields, motion.frames[0] if target == "first frame" else None)


def speech_activity(clip: AudioClip, num_frames: int, fps: float = 25.0, floor_db: float = -45.0,
                    full_db: float = -25.0) -> torch.Tensor:
    """Per-frame speech activity in [0, 1] from loudness: 0 at or below ``floor_db`` (dBFS RMS), 1 at or above
    ``full_db``, linear between. Use ``relax(motion, 1 - activity)`` to let the face rest during silences."""
    hop = SAMPLE_RATE / fps
    out = torch.zeros(num_frames)
    for i in range(num_frames):
        piece = clip.samples[int(i * hop) : int((i + 1) * hop)]
        rms = float(np.sqrt(np.mean(piece.astype(np.float64) ** 2))) if len(piece) else 0.0
        level = 20 * np.log10(max(rms, 1e-10))
        out[i] = float(np.clip((level - floor_db) / (full_db - floor_db), 0, 1))
    return out


def over_clip(curve: Callable[[np.ndarray], np.ndarray], num_frames: int) -> torch.Tensor:
    """A curve drawn over the whole clip (``curve`` maps x in [0, 1], 0 the first frame and 1 the last, to y) →
    ``[num_frames]`` float32 values, one per frame."""
    x = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(num_frames)
    return torch.from_numpy(np.asarray(curve(x), dtype=np.float32).reshape(num_frames))


def keyframe_curve(text: str, num_frames: int, fps: float = 25.0) -> torch.Tensor:
    """``"0:0, 2:15, 4:0"`` (seconds:value pairs) → ``[num_frames]`` values, linear between keyframes and held
    before the first and after the last."""
    try:
        points = sorted((float(t), float(v)) for t, v in (item.split(":") for item in text.split(",") if item.strip()))
    except ValueError as exc:
        raise ValueError(f"cannot read the curve {text!r}; write keyframes as seconds:value, e.g. 0:0, 2:15, 4:0") from exc
    return keyframe_values(points, num_frames, fps)


def keyframe_values(points, num_frames: int, fps: float = 25.0) -> torch.Tensor:
    """``(seconds, value)`` pairs → ``[num_frames]`` values, linear between them and held before the first and
    after the last (zeros without pairs)."""
    points = sorted((float(t), float(v)) for t, v in points)
    if not np.isfinite(np.array(points, dtype=np.float64)).all():
        raise ValueError(f"keyframe times and values must be finite numbers, got {points}")
    if not points:
        return torch.zeros(num_frames)
    times = np.arange(num_frames) / fps
    return torch.from_numpy(np.interp(times, [p[0] for p in points], [p[1] for p in points])).float()


FACE_NAMES = ("edit_face", "apply_reference", "FACE_CONTROLS")  # face editing lives in face.py, which uses these


def __getattr__(name: str):
    if name in FACE_NAMES:
        from . import face

        return getattr(face, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
