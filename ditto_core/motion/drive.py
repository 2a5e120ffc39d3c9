"""From motion to renderer keypoints: mix driven motion into the source, mask the expression, fix the gaze,
pose the keypoints and stitch them (the reference's MotionStitch, vectorised over frames)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..keypoints import bins_to_degrees, transform_keypoints
from .motion import FIELDS, Motion

LIP_KEYPOINTS = (6, 12, 14, 17, 19, 20)
EYE_KEYPOINTS = (11, 13, 15, 16, 18)
IMAGE_DRIVEN_FIELDS = ("exp", "pitch", "yaw", "roll", "t")
VIDEO_DRIVEN_FIELDS = ("exp",)
GAZE_X_RATIO, GAZE_Y_RATIO = 0.26, 0.28


@dataclass(frozen=True)
class DriveOptions:
    relative: bool = True  # drive by the motion's change from its anchor frame, added to the source
    driven_fields: tuple[str, ...] | None = None  # None: all pose+exp+t for images, exp only for video sources
    drive_eyes: bool | None = None  # eye keypoints from the motion (None: yes for images, no for videos)
    stitching: bool = True


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
    frame_indices: motion frames; source_indices: the source frame each one is rendered from.
    """
    frame_indices = torch.as_tensor(frame_indices, dtype=torch.long)
    source_indices = torch.as_tensor(source_indices, dtype=torch.long)
    driven_fields = options.driven_fields or (VIDEO_DRIVEN_FIELDS if is_video else IMAGE_DRIVEN_FIELDS)
    drive_eyes = (not is_video) if options.drive_eyes is None else options.drive_eyes
    src = {name: values[source_indices].float() for name, values in source.items()}
    fields = {}
    for name in FIELDS:
        if name not in driven_fields:
            fields[name] = src[name]
            continue
        driven = motion.field(name)[frame_indices]
        if options.relative:
            anchor = motion.anchor[FIELDS[name]] + (1 if name == "scale" else 0)
            driven = src[name] + (driven - anchor)
        fields[name] = driven
    if "exp" in driven_fields:
        from_motion = keypoint_mask(LIP_KEYPOINTS + (EYE_KEYPOINTS if drive_eyes else ()))
        fields["exp"] = fields["exp"] * from_motion + src["exp"] * (1 - from_motion)
    degrees = {name: bins_to_degrees(fields[name]) for name in ("pitch", "yaw", "roll")}
    if drive_eyes:
        yaw_s, pitch_s = source_pose_degrees
        fields["exp"] = fields["exp"] + gaze_offsets(degrees["yaw"] - yaw_s, degrees["pitch"] - pitch_s)
    x_d = transform_keypoints(
        src["kp"], degrees["pitch"], degrees["yaw"], degrees["roll"], fields["t"], fields["exp"], fields["scale"]
    )
    return fields, x_d
