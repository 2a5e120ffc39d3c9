"""``Motion``: per-frame head motion in Ditto's explicit 265-d keypoint space, as editable data.

Layout of one frame (the LMDM's output and the motion extractor's fields, ``kp`` excluded):

    [0:1]   scale − 1     [1:67] pitch logits (66 bins)   [67:133] yaw logits   [133:199] roll logits
    [199:202] t (x, y, z; z unused)   [202:265] exp (21 keypoints × xyz, keypoint-major)

Beside the frames a Motion may carry expression offsets ``[N, 63]`` (face edits: a smile, raised eyebrows, a
photo's expression). Driving adds them after the reference's keypoint masks, where its per-frame ``delta_exp``
goes, so they show on every keypoint (the masks pass only lips and eyes of the frames' own expression).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from numbers import Real
from pathlib import Path

import torch

from ..keypoints import bins_to_degrees, shift_bins
from .storage import EXP_DIM, MOTION_DIM, MotionFileError, motion_header, read_motion_file

FIELDS = {
    "scale": slice(0, 1),
    "pitch": slice(1, 67),
    "yaw": slice(67, 133),
    "roll": slice(133, 199),
    "t": slice(199, 202),
    "exp": slice(202, 265),
}
NUM_KP = 21
DEFAULT_FPS = 25.0
MIN_FPS, MAX_FPS = 1.0, 1000.0  # a rate outside these is a damaged value, not a camera's


def check_motion_fps(fps) -> float:
    """``fps`` as a float when a motion can run at it; ValueError naming the value otherwise."""
    if isinstance(fps, bool) or not isinstance(fps, Real) or not MIN_FPS <= fps <= MAX_FPS:
        raise ValueError(f"fps is {fps!r}; a motion's frame rate must be a number from {MIN_FPS:g} to {MAX_FPS:g}")
    return float(fps)


def check_finite(values: torch.Tensor, what: str) -> None:
    bad = ~torch.isfinite(values)
    if bad.any():
        where = f", the first in frame {int(bad.any(dim=-1).nonzero()[0])}" if values.ndim == 2 else ""
        raise ValueError(f"{int(bad.sum())} NaN or infinite value(s) in {what}{where}; motion values must be finite")


def keypoint_fields_to_vector(fields: dict[str, torch.Tensor]) -> torch.Tensor:
    """Motion-extractor outputs (each ``[F, n]``; scale raw) → ``[F, 265]`` with scale stored as scale − 1."""
    parts = [fields[name].reshape(fields[name].shape[0], -1).float() for name in FIELDS]
    parts[0] = parts[0] - 1
    return torch.cat(parts, dim=-1)


@dataclass(frozen=True)
class Motion:
    """frames: ``[N, 265]`` float32 (CPU); fps: frames per second; anchor: ``[265]``, the frame that relative
    driving measures motion from (the first generated frame for sampled motion); metadata: JSON-serialisable
    facts (source, seed, emotion timeline, …); exp_offsets: ``[N, 63]`` expression offsets added after driving's
    keypoint masks (face edits), or None for none."""

    frames: torch.Tensor
    fps: float = DEFAULT_FPS
    anchor: torch.Tensor | None = None
    metadata: dict = field(default_factory=dict)
    exp_offsets: torch.Tensor | None = None

    def __post_init__(self):
        if self.frames.ndim != 2 or self.frames.shape[1] != MOTION_DIM:
            raise ValueError(f"motion frames must have shape [N, {MOTION_DIM}], got {tuple(self.frames.shape)}")
        if self.frames.shape[0] == 0:
            raise ValueError("motion has no frames")
        object.__setattr__(self, "frames", self.frames.detach().float().cpu().contiguous())
        check_finite(self.frames, "the frames")  # after float32: a float64 1e300 is infinite there
        object.__setattr__(self, "fps", check_motion_fps(self.fps))
        if self.anchor is not None and self.anchor.numel() != MOTION_DIM:
            raise ValueError(f"the anchor must have {MOTION_DIM} values, got shape {tuple(self.anchor.shape)}")
        anchor = self.frames[0] if self.anchor is None else self.anchor.detach().float().cpu().reshape(MOTION_DIM)
        check_finite(anchor, "the anchor")
        object.__setattr__(self, "anchor", anchor.clone())
        if not isinstance(self.metadata, dict):
            raise ValueError(f"the metadata must be a dict, got {type(self.metadata).__name__}")
        if self.exp_offsets is not None:
            offsets = self.exp_offsets.detach().float().cpu().contiguous()
            if offsets.shape != (len(self), EXP_DIM):
                raise ValueError(f"expression offsets must have shape [{len(self)}, {EXP_DIM}] (one row per frame), "
                                 f"got {tuple(offsets.shape)}")
            if not torch.isfinite(offsets).all():
                raise ValueError("expression offsets contain NaN or infinite values")
            object.__setattr__(self, "exp_offsets", offsets)

    def __len__(self) -> int:
        return self.frames.shape[0]

    @property
    def duration_s(self) -> float:
        return len(self) / self.fps

    def field(self, name: str) -> torch.Tensor:
        """One field for every frame: scale ``[N, 1]`` (actual scale, +1 restored), pose logits ``[N, 66]``,
        t ``[N, 3]``, exp ``[N, 63]``."""
        values = self.frames[:, FIELDS[name]]
        return values + 1 if name == "scale" else values

    def degrees(self, name: str) -> torch.Tensor:
        """Head pose ``pitch``/``yaw``/``roll`` in degrees ``[N]``."""
        return bins_to_degrees(self.field(name))

    @property
    def offsets(self) -> torch.Tensor:
        """The expression offsets ``[N, 63]`` (zeros when there are none)."""
        return self.exp_offsets if self.exp_offsets is not None else torch.zeros(len(self), EXP_DIM)

    def with_frames(self, frames: torch.Tensor, **metadata) -> "Motion":
        """The same motion with new frames of the same count (offsets kept)."""
        return replace(self, frames=frames, metadata={**self.metadata, **metadata})

    def with_offsets(self, offsets: torch.Tensor | None, **metadata) -> "Motion":
        """The same frames with new expression offsets ``[N, 63]`` (None: none)."""
        return replace(self, exp_offsets=offsets, metadata={**self.metadata, **metadata})

    def _rows(self, frames: torch.Tensor, offsets: torch.Tensor | None) -> "Motion":
        return replace(self, frames=frames, exp_offsets=offsets)

    # --- time edits -------------------------------------------------------------------------------------
    def slice(self, start: int, stop: int | None = None) -> "Motion":
        """Frames ``start:stop`` (anchor kept)."""
        frames = self.frames[start:stop]
        if len(frames) == 0:
            raise ValueError(f"slice {start}:{stop} of a {len(self)}-frame motion is empty")
        return self._rows(frames, None if self.exp_offsets is None else self.exp_offsets[start:stop])

    def concat(self, other: "Motion") -> "Motion":
        """This motion followed by ``other`` (same fps required; this motion's anchor kept)."""
        if abs(self.fps - other.fps) > 1e-6:
            raise ValueError(f"cannot join motions at {self.fps} and {other.fps} fps; resample one first")
        offsets = None
        if self.exp_offsets is not None or other.exp_offsets is not None:
            offsets = torch.cat([self.offsets, other.offsets])
        return self._rows(torch.cat([self.frames, other.frames]), offsets)

    def resample(self, fps: float, count: int | None = None) -> "Motion":
        """The motion at ``fps`` over the same time span: ``count`` frames (default ⌈N·fps/old_fps⌉), see
        ``resample_frames``."""
        fps = check_motion_fps(fps)
        count = count if count is not None else max(1, math.ceil(len(self) * fps / self.fps - 1e-9))
        positions = torch.arange(count, dtype=torch.float64) * (self.fps / fps)
        offsets = None if self.exp_offsets is None else interpolate_rows(self.exp_offsets, positions)
        return replace(self, frames=resample_frames(self.frames, positions), fps=fps, exp_offsets=offsets)

    def blend(self, other: "Motion", weight) -> "Motion":
        """(1 − w)·self + w·other per frame; ``weight`` is a number or a curve ``[N]``; lengths must match."""
        if len(other) != len(self):
            raise ValueError(f"cannot blend motions of {len(self)} and {len(other)} frames; slice or resample first")
        w = torch.as_tensor(weight, dtype=torch.float32)
        w = w.expand(len(self)) if w.ndim == 0 else w
        if w.shape != (len(self),):
            raise ValueError(f"blend weight must be a number or have one value per frame ({len(self)}), got {tuple(w.shape)}")
        offsets = None
        if self.exp_offsets is not None or other.exp_offsets is not None:
            offsets = self.offsets * (1 - w[:, None]) + other.offsets * w[:, None]
        return self._rows(self.frames * (1 - w[:, None]) + other.frames * w[:, None], offsets)

    def held(self, count: int) -> "Motion":
        """This motion's first frame held for ``count`` frames (a still expression given a length)."""
        if count < 1:
            raise ValueError(f"a held motion needs at least one frame, got {count}")
        offsets = None if self.exp_offsets is None else self.exp_offsets[:1].expand(count, -1)
        return self._rows(self.frames[:1].expand(count, -1), offsets)

    # --- files ------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``.safetensors`` with frames, anchor, expression offsets (when any) and JSON metadata
        (atomically)."""
        from safetensors.torch import save

        from ..files import atomic_write_bytes

        header = motion_header(self.fps, self.metadata)
        tensors = {"frames": self.frames, "anchor": self.anchor}
        if self.exp_offsets is not None:
            tensors["exp_offsets"] = self.exp_offsets
        return atomic_write_bytes(path, save(tensors, metadata=header))

    @classmethod
    def load(cls, path: str | Path) -> "Motion":
        """A motion file, every value checked; MotionFileError naming the file and the value otherwise."""
        path = Path(path)
        tensors, header, metadata = read_motion_file(path)
        try:
            fps = float(header.get("fps"))
        except (TypeError, ValueError):
            fps = header.get("fps")  # not a number: the fps check below names it
        try:
            return cls(frames=tensors["frames"], fps=fps, anchor=tensors.get("anchor"), metadata=metadata,
                       exp_offsets=tensors.get("exp_offsets"))
        except ValueError as exc:
            raise MotionFileError(f"{path}: {exc}") from None


def interpolate_rows(rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rows ``[N, k]`` read linearly at fractional ``positions`` ``[M]`` (clamped to the last row) → ``[M, k]``."""
    positions = positions.clamp(0, len(rows) - 1)
    low = positions.floor().long()
    high = (low + 1).clamp(max=len(rows) - 1)
    weight = (positions - low).float()[:, None]
    return rows[low] * (1 - weight) + rows[high] * weight


def resample_frames(frames: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Motion frames ``[N, 265]`` read at fractional frame ``positions`` ``[M]`` (clamped to the last frame).

    Scale, translation and expression are interpolated linearly. Head pose goes through its angles: the angle is
    interpolated, and the nearer frame's bin distribution is shifted to it (a blend of two distributions would
    be a wider, two-peaked one, not a pose in between). Frames at whole positions are returned unchanged.
    """
    positions = positions.clamp(0, len(frames) - 1)
    low = positions.floor().long()
    high = (low + 1).clamp(max=len(frames) - 1)
    weight = (positions - low).float()
    out = interpolate_rows(frames, positions)
    nearest = torch.where(weight < 0.5, low, high)
    between = weight > 0
    for name in ("pitch", "yaw", "roll"):
        span = FIELDS[name]
        degrees = bins_to_degrees(frames[:, span])
        target = degrees[low] * (1 - weight) + degrees[high] * weight
        pose = frames[low, span].clone()
        if between.any():
            pose[between] = shift_bins(frames[nearest[between], span], (target - degrees[nearest])[between])
        out[:, span] = pose
    return out


class StreamResampler:
    """Motion arriving in blocks at ``source_fps`` → ``count`` frames at ``fps``, each emitted as soon as the two
    source frames it lies between have arrived (``resample_frames`` on the way)."""

    def __init__(self, source_fps: float, fps: float, count: int):
        self.step = source_fps / fps
        self.count = count
        self.buffer = torch.zeros(0, MOTION_DIM)  # source frames from index `base` on
        self.base = 0
        self.emitted = 0

    def _emit(self, final: bool) -> torch.Tensor:
        received = self.base + len(self.buffer)
        ready = []
        while self.emitted < self.count:
            position = self.emitted * self.step
            if not final and math.floor(position) + 1 >= received:
                break
            ready.append(position)
            self.emitted += 1
        if not ready:
            return torch.zeros(0, MOTION_DIM)
        local = torch.tensor(ready, dtype=torch.float64) - self.base
        out = resample_frames(self.buffer, local)
        keep_from = max(math.floor(self.emitted * self.step) - self.base, 0)
        self.buffer, self.base = self.buffer[keep_from:], self.base + keep_from
        return out

    def push(self, block: torch.Tensor) -> torch.Tensor:
        self.buffer = torch.cat([self.buffer, block])
        return self._emit(final=False)

    def finish(self) -> torch.Tensor:
        return self._emit(final=True)


LIP_EXP_COLUMNS = [3 * k + c for k in (6, 12, 14, 17, 19, 20) for c in range(3)]


def preview_curves(motion: Motion, max_points: int = 400) -> dict[str, list[float]]:
    """Per-frame curves for a quick look, downsampled to at most ``max_points``: head pitch/yaw/roll in degrees,
    mouth movement (size of the lip keypoints' expression change from the anchor) and, for a motion with face
    edits, ``face``: the amount of each face control that is not 0 (``face.face_amounts``)."""
    step = max(1, -(-len(motion) // max_points))
    lips = motion.field("exp")[:, LIP_EXP_COLUMNS] - motion.anchor[FIELDS["exp"]][LIP_EXP_COLUMNS]
    curves = {name: motion.degrees(name) for name in ("pitch", "yaw", "roll")}
    curves["mouth"] = lips.norm(dim=-1)
    out = {name: [round(float(v), 4) for v in values[::step]] for name, values in curves.items()} | {
        "fps": [motion.fps / step],
        "frames": [len(motion)],
    }
    if motion.exp_offsets is not None and bool((motion.exp_offsets != 0).any()):
        from .face import face_amounts

        amounts = face_amounts(motion.exp_offsets[::step])
        out["face"] = {name: [round(float(v), 4) for v in values] for name, values in amounts.items()
                       if bool((values.abs() > 1e-3).any())}
    return out
