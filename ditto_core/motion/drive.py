"""From motion to renderer keypoints: mix driven motion into the source, mask the expression, fix the gaze,
pose the keypoints and stitch them (the reference's MotionStitch, vectorised over frames)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..keypoints import bins_to_degrees, transform_keypoints
from .motion import FIELDS, Motion

LIP_KEYPOINTS = (6, 12, 14, 17, 19, 20)
EYE_KEYPOINTS = (11, 13, 15, 16, 18)
IMAGE_DRIVEN_FIELDS = ("exp", "pitch", "yaw", "roll", "t")
VIDEO_DRIVEN_FIELDS = ("exp",)
GAZE_X_RATIO, GAZE_Y_RATIO = 0.26, 0.28


FRAME_CONTROLS = ("delta_pitch", "delta_yaw", "delta_roll", "alpha_pitch", "alpha_yaw", "alpha_roll", "vad_alpha")
CANONICAL_SCALED_FIELDS = ("exp", "pitch", "yaw", "roll")


@dataclass(frozen=True)
class DriveOptions:
    """How motion drives the source (the reference's MotionStitch settings; the release cfg fills them)."""

    relative: bool = True  # drive by the motion's change from its anchor frame, added to the source
    driven_fields: tuple[str, ...] | None = None  # None: all pose+exp+t for images, exp only for video sources
    field_gains: dict[str, float] | None = None  # per-field gains on the driven change (use_d_keys as a dict)
    drive_eyes: bool | None = None  # eye keypoints from the motion (None: yes for images, no for videos)
    eye_template: bool = False  # driven eyes are the source's plus the motion's eye change, ungained (blinks)
    canonical_scale: float | None = None  # ch_info's scale: exp/pose gains × canonical scale / source scale
    frame_controls: dict = field(default_factory=dict)  # every frame: delta_/alpha_ pitch/yaw/roll, delta_exp, vad_alpha
    stitching: bool = True

    def eyes_driven(self, is_video: bool) -> bool:
        """Whether the eye keypoints come from the motion: ``drive_eyes``, or by default for images only."""
        return (not is_video) if self.drive_eyes is None else self.drive_eyes


def keypoint_mask(indices) -> torch.Tensor:
    """``[63]`` float mask that is 1 on all three coordinates of the given keypoints."""
    mask = torch.zeros(21, 3)
    mask[list(indices)] = 1
    return mask.reshape(63)


def gaze_offsets(yaw_delta: torch.Tensor, pitch_delta: torch.Tensor) -> torch.Tensor:
    """The reference's gaze fix as expression offsets ``[B, 63]`` for head turns of (yaw, pitch) degrees ``[B]``
    away from the source: eye keypoints 11 and 15 shift against the turn so the eyes keep looking ahead."""
    dx, dy = yaw_delta * GAZE_X_RATIO, pitch_delta * GAZE_Y_RATIO
    out = torch.zeros(len(dx), 63)
    positive = dx > 0
    out[:, 33] = torch.where(positive, dx * 0.0007, dx * 0.001)
    out[:, 45] = torch.where(positive, dx * 0.001, dx * 0.0007)
    out[:, 34] = dy * -0.001
    out[:, 46] = dy * -0.001
    return out


def field_gains(options: DriveOptions, driven_fields: tuple[str, ...], source_scale: float) -> dict | None:
    """Gains on each driven field's change, or None for plain driving: ``use_d_keys`` gains, times
    canonical/source scale on expression and pose when a canonical source (ch_info) is configured."""
    gains = dict(options.field_gains) if options.field_gains is not None else None
    if options.canonical_scale is not None:
        ratio = options.canonical_scale / source_scale
        if ratio != 1:
            base = gains if gains is not None else {name: 1.0 for name in driven_fields}
            gains = {name: gain * (ratio if name in CANONICAL_SCALED_FIELDS else 1) for name, gain in base.items()}
    return gains


def driving_keypoints(
    source: dict[str, torch.Tensor],
    source_pose_degrees: tuple[float, float],
    motion: Motion,
    frame_indices,
    source_indices,
    is_video: bool,
    options: DriveOptions = DriveOptions(),
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Driven motion fields for a batch of frames, and the x_d keypoints before stitching ``[B, 21, 3]``.

    source: the portrait's keypoint fields ``[F, …]``; source_pose_degrees: (yaw, pitch) of source frame 0;
    frame_indices: motion frames; source_indices: the source frame each one is rendered from. The steps and
    their order are the reference's: mix source and motion, choose expression keypoints, per-frame controls (and
    the motion's expression offsets), gaze fix, pose.
    """
    frame_indices = torch.as_tensor(frame_indices, dtype=torch.long)
    source_indices = torch.as_tensor(source_indices, dtype=torch.long)
    driven_fields = options.driven_fields or (VIDEO_DRIVEN_FIELDS if is_video else IMAGE_DRIVEN_FIELDS)
    drive_eyes = options.eyes_driven(is_video)
    gains = field_gains(options, driven_fields, float(source["scale"][0].reshape(-1)[0]))
    src = {name: values[source_indices].float() for name, values in source.items()}
    fields = {}
    for name in FIELDS:
        if name not in driven_fields:
            fields[name] = src[name]
            continue
        driven = motion.field(name)[frame_indices]
        gain = None if gains is None else gains.get(name, 1.0)
        if options.relative:
            anchor = motion.anchor[FIELDS[name]] + (1 if name == "scale" else 0)
            change = driven - anchor
            driven = src[name] + (change if gain is None else change * gain)
        elif gain is not None:
            driven = driven * gain
        fields[name] = driven

    template_eyes = drive_eyes and options.eye_template
    from_motion = keypoint_mask(LIP_KEYPOINTS + (EYE_KEYPOINTS if drive_eyes and not template_eyes else ()))
    eyes = keypoint_mask(EYE_KEYPOINTS) if template_eyes else torch.zeros(63)
    eye_change = motion.field("exp")[frame_indices] - motion.anchor[FIELDS["exp"]]
    exp = fields["exp"] * from_motion + src["exp"] * (1 - from_motion) + eye_change * eyes
    controls = options.frame_controls
    vad = controls.get("vad_alpha", 1.0)
    if vad < 1:
        exp = exp * vad + src["exp"] * (1 - vad)
    # pose: degrees where an offset is given (the reference converts then), logits otherwise; gains multiply
    # whichever it is, as the reference does
    pose = {name: fields[name] for name in ("pitch", "yaw", "roll")}
    for name in pose:
        if f"delta_{name}" in controls:
            pose[name] = bins_to_degrees(pose[name]) + controls[f"delta_{name}"]
    for name in pose:
        if f"alpha_{name}" in controls:
            pose[name] = pose[name] * controls[f"alpha_{name}"]
    if "delta_exp" in controls:
        exp = exp + torch.as_tensor(controls["delta_exp"], dtype=torch.float32).reshape(1, 63)
    if motion.exp_offsets is not None:  # face edits: per-frame offsets on every keypoint, where delta_exp goes
        exp = exp + motion.exp_offsets[frame_indices]
    degrees = {name: value if value.ndim == 1 else bins_to_degrees(value) for name, value in pose.items()}
    if drive_eyes:
        yaw_s, pitch_s = source_pose_degrees
        exp = exp + gaze_offsets(degrees["yaw"] - yaw_s, degrees["pitch"] - pitch_s)
    fields = {**fields, **pose, "exp": exp}
    x_d = transform_keypoints(
        src["kp"], degrees["pitch"], degrees["yaw"], degrees["roll"], fields["t"], exp, fields["scale"]
    )
    return fields, x_d
