"""Face edits: semantic expression controls (smile, eyebrows, winks, eyes, mouth shapes, pupils) and a
reference face's expression or pose, as amounts that change over the clip.

Every edit lands in the Motion's expression offsets ``[N, 63]`` (``Motion.exp_offsets``), which driving adds
after the reference's keypoint masks, so a control shows on every keypoint it moves, brows and cheeks included.
The frames are not touched (except a reference's pose), so face edits compose with every other control and with
the release's blinks, and an amount of 0 leaves the motion exactly as it was.

Which of the 21 implicit keypoints each control moves, and in which direction, follows LivePortrait's own
retargeting sliders (``src/gradio_pipeline.py``) and ComfyUI-AdvancedLivePortrait's expression editor, which
edit the same motion extractor's expression space (Ditto's renderer is LivePortrait's). Axes: +x is the image's
right, +y the image's down. Pairs across the face: 11/15 (eyes; their y is the upper lid), 13/16 (lower lids),
3/7 (cheeks), 1/2 (brows); 14, 17, 19, 20 are the mouth. Keypoints 11, 13 and 3 are on the person's left (the
image's right): LivePortrait's wink closes 11 while pulling the mouth (17) toward +x, and its gaze moves 11 less
than 15 when looking toward +x (the near eye is foreshortened).

Calibration: 1 is the amount those sliders give at about two thirds of their positive range (a clear, natural
expression that stays on the face; 1.5 is strong), e.g. smile 1 is LivePortrait's smile 1.0 (slider to 1.3),
eyebrows 1 its eyebrow 10 (AdvancedLivePortrait's slider to 15), a wink or eyes_open −1 closes the eye as
AdvancedLivePortrait's blink −20 (its minimum) does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .controls import keyframe_curve, keyframe_values, offset_pose, per_frame
from .drive import LIP_KEYPOINTS
from .motion import EXP_DIM, FIELDS, Motion, interpolate_rows

Moves = dict[tuple[int, int], float]  # (keypoint, axis 0/1/2 = x/y/z) → offset at amount 1 (or −1)


@dataclass(frozen=True)
class FaceControl:
    """One semantic control: ``raise_`` is the offset at amount +1, ``lower`` the offset at amount −1 (None: the
    negative of ``raise_``); amounts in between and beyond scale linearly on each side."""

    name: str
    description: str
    raise_: Moves
    lower: Moves | None = None

    @staticmethod
    def _vector(moves: Moves) -> torch.Tensor:
        out = torch.zeros(EXP_DIM)
        for (keypoint, axis), value in moves.items():
            out[3 * keypoint + axis] = value
        return out

    @property
    def up(self) -> torch.Tensor:
        """Offset ``[63]`` per unit of positive amount."""
        return self._vector(self.raise_)

    @property
    def down(self) -> torch.Tensor:
        """Offset ``[63]`` per unit of negative amount (an amount −a adds a·down)."""
        return -self.up if self.lower is None else self._vector(self.lower)

    @property
    def keypoints(self) -> tuple[int, ...]:
        return tuple(sorted({k for k, _ in self.raise_} | {k for k, _ in (self.lower or {})}))

    def offsets(self, amount: torch.Tensor) -> torch.Tensor:
        """amount ``[N]`` → expression offsets ``[N, 63]``."""
        return amount.clamp(min=0)[:, None] * self.up + (-amount).clamp(min=0)[:, None] * self.down


def _mirror(moves: Moves, pairs: dict[int, int]) -> Moves:
    """The same moves on the other side of the face: paired keypoints swapped, x negated."""
    both = {**pairs, **{b: a for a, b in pairs.items()}}
    return {(both.get(k, k), axis): -v if axis == 0 else v for (k, axis), v in moves.items()}


_SIDES = {11: 15, 13: 16, 3: 7}
_WINK_LEFT = {(11, 1): 0.02, (13, 1): -0.006, (3, 1): -0.006, (17, 0): 0.006, (17, 1): 0.006}

FACE_CONTROLS: dict[str, FaceControl] = {c.name: c for c in (
    FaceControl("smile", "lip corners (14, 20) and cheeks (3, 7) up, lower lip (17) down and forward, lower lids "
                "(13, 16) up; negative turns the mouth down",
                {(14, 1): -0.02, (20, 1): -0.01, (17, 1): 0.0065, (17, 2): 0.003, (13, 1): -0.00275,
                 (16, 1): -0.00275, (3, 1): -0.0035, (7, 1): -0.0035}),
    FaceControl("eyebrows", "brows (1, 2): raised; negative knits them (drawn together and down)",
                {(1, 1): 0.01, (2, 1): -0.01},
                {(1, 0): 0.01, (2, 0): -0.01, (1, 1): -0.003, (2, 1): 0.003}),
    FaceControl("wink_left", "closes the person's left eye (11 down, lower lid 13 up), raises that cheek (3) and "
                "pulls the lower lip (17) toward it and down", _WINK_LEFT),
    FaceControl("wink_right", "closes the person's right eye (15, 16), raises that cheek (7) and pulls the lower "
                "lip (17) toward it and down", _mirror(_WINK_LEFT, _SIDES)),
    FaceControl("eyes_open", "both eyes: upper lids (11, 15) up and lower lids (13, 16) down, 1 wide open; −1 "
                "closes them", {(11, 1): -0.005, (15, 1): -0.005, (13, 1): 0.0015, (16, 1): 0.0015},
                {(11, 1): 0.02, (15, 1): 0.02, (13, 1): -0.006, (16, 1): -0.006}),
    FaceControl("mouth_aaa", "jaw open: lower lip (19) down and forward, 17 up a little; negative presses the "
                "lips together", {(19, 1): 0.06, (19, 2): 0.006, (17, 1): -0.006}),
    FaceControl("mouth_eee", "lips spread: corners (14, 20) up, 20 back", {(14, 1): -0.01, (20, 1): -0.01,
                                                                          (20, 2): -0.01}),
    FaceControl("mouth_woo", "lips pursed: corners (14) down, cheeks (3, 7) up, lower lip (17) back",
                {(14, 1): 0.01, (3, 1): -0.005, (7, 1): -0.005, (17, 2): -0.005}),
    FaceControl("pupil_x", "pupils (11, 15) toward the image's right; negative toward its left",
                {(11, 0): 0.007, (15, 0): 0.01}, {(11, 0): -0.01, (15, 0): -0.007}),
    FaceControl("pupil_y", "pupils (11, 15) up; negative down", {(11, 1): -0.01, (15, 1): -0.01}),
)}

REFERENCE_PARTS = ("pose", "expression", "mouth")


class FaceEditError(ValueError):
    """An amount or a control that cannot be used (the message says what to write instead)."""


def amount_curve(value, num_frames: int, fps: float = 25.0, name: str = "amount") -> torch.Tensor:
    """An amount for every frame ``[num_frames]``: a number, a keyframe text ``"0:0, 1.5:1, 3:0"`` (seconds:value,
    linear between keyframes, held before the first and after the last), a list of ``(seconds, value)`` pairs, or
    one value per frame (a tensor or array). Every value, keyframe times included, must be finite."""
    curve = _read_amount(value, num_frames, fps, name)
    if not torch.isfinite(curve).all():
        raise FaceEditError(f"{name}: the amount must be a finite number (and keyframe times finite seconds), got "
                            f"{value!r}")
    return curve


def _read_amount(value, num_frames: int, fps: float, name: str) -> torch.Tensor:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return torch.zeros(num_frames)
        if ":" not in text:
            try:
                return torch.full((num_frames,), float(text))
            except ValueError:
                raise FaceEditError(f"{name}: cannot read {value!r}; write a number (0.5) or keyframes as "
                                    f"seconds:value, e.g. 0:0, 1.5:1, 3:0") from None
        try:
            return keyframe_curve(text, num_frames, fps)
        except ValueError:
            raise FaceEditError(f"{name}: cannot read the keyframes {value!r}; write them as seconds:value "
                                f"separated by commas, e.g. 0:0, 1.5:1, 3:0") from None
    if isinstance(value, (list, tuple)) and value and all(isinstance(p, (list, tuple)) for p in value):
        try:
            if any(len(p) != 2 for p in value):
                raise ValueError("not pairs")
            return keyframe_values([(float(t), float(v)) for t, v in value], num_frames, fps)
        except (TypeError, ValueError):
            raise FaceEditError(f"{name}: keyframes must be (seconds, value) pairs of numbers, got {value!r}") from None
    try:
        return per_frame(value, num_frames)
    except (TypeError, RuntimeError, ValueError) as exc:
        raise FaceEditError(f"{name}: expected a number, keyframe text like '0:0, 1.5:1', (seconds, value) pairs "
                            f"or one value per frame ({num_frames}); got {value!r} ({exc})") from None


def parse_face_keyframes(text: str, extra_names=("reference",)) -> dict[str, str]:
    """Keyframe lines, one control each: ``"smile = 0:0, 1.5:1, 3:0"`` (or ``smile: …``) → ``{"smile": "0:0, 1.5:1,
    3:0"}``; blank lines are skipped. Names: the face controls and ``extra_names``. Each line's keyframes are checked
    here, so a mistake is reported before anything runs."""
    names = (*FACE_CONTROLS, *extra_names)
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        separator = "=" if "=" in line else ":"
        name, _, keyframes = line.partition(separator)
        name = name.strip()
        if name not in names:
            raise FaceEditError(f"line {number} ({line.strip()!r}): unknown control {name!r}; write one control per "
                                f"line as name = seconds:value, …, with a name among {', '.join(names)}")
        if name in out:
            raise FaceEditError(f"line {number}: {name} is given twice; give each control one line")
        amount_curve(keyframes, 1, name=name)  # raises with what to write
        out[name] = keyframes.strip()
    return out


def face_offsets(amounts: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-frame amounts ``{name: [N]}`` → summed expression offsets ``[N, 63]``."""
    unknown = sorted(set(amounts) - set(FACE_CONTROLS))
    if unknown:
        raise FaceEditError(f"unknown face control {', '.join(map(repr, unknown))}; the controls are "
                            f"{', '.join(FACE_CONTROLS)}")
    count = len(next(iter(amounts.values()))) if amounts else 0
    total = torch.zeros(count, EXP_DIM)
    for name, amount in amounts.items():
        total = total + FACE_CONTROLS[name].offsets(amount)
    return total


def edit_face(motion: Motion, **amounts) -> Motion:
    """Add semantic expression offsets to the motion (see ``FACE_CONTROLS``): each amount is a number, a keyframe
    text ``"0:0, 1.5:1, 3:0"`` (seconds:value), a list of ``(seconds, value)`` pairs or one value per frame.
    Amounts of 0 return the motion unchanged."""
    curves = {name: amount_curve(value, len(motion), motion.fps, name) for name, value in amounts.items()}
    offsets = face_offsets(curves)
    if not bool((offsets != 0).any()):
        return motion
    edits = {name: describe_amount(value) for name, value in amounts.items()}
    return motion.with_offsets(motion.offsets + offsets, face_edits=[*motion.metadata.get("face_edits", []), edits])


def describe_amount(value) -> float | str | list:
    """An amount as JSON for the motion's metadata (a per-frame curve as its range)."""
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [list(map(float, p)) if isinstance(p, (list, tuple)) else float(p) for p in value]
    curve = torch.as_tensor(value, dtype=torch.float32)
    if curve.ndim == 0:  # a numpy or torch scalar
        return float(curve)
    return f"{len(curve)} per-frame values from {float(curve.min()):.3g} to {float(curve.max()):.3g}"


def face_amounts(offsets: torch.Tensor) -> dict[str, torch.Tensor]:
    """The control amounts ``{name: [N]}`` that best make expression offsets ``[N, 63]`` (least squares), exact
    for offsets made by ``edit_face``; for other offsets (a photo's expression), the nearest mix of controls.

    Two passes: solve with each control's positive direction, then again with the negative direction of those
    whose amount came out negative."""
    ups = torch.stack([c.up for c in FACE_CONTROLS.values()], dim=1)  # [63, C]
    downs = torch.stack([-c.down for c in FACE_CONTROLS.values()], dim=1)  # amount a < 0 adds a·(−down)
    first = torch.linalg.lstsq(ups.double(), offsets.double().T).solution.T  # [N, C]
    columns = torch.where((first < 0)[:, None, :], downs.double()[None], ups.double()[None])  # [N, 63, C]
    solution = torch.linalg.lstsq(columns, offsets.double()[:, :, None]).solution[..., 0].float()
    return {name: solution[:, i] for i, name in enumerate(FACE_CONTROLS)}


def reference_expression(reference: Motion, num_frames: int, fps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's expression (its exp plus its offsets) ``[num_frames, 63]`` and its frames ``[num_frames,
    265]``, read at ``fps``: a one-frame reference is held, a sequence plays at its own rate and holds its last
    frame."""
    positions = torch.arange(num_frames, dtype=torch.float64) * (reference.fps / fps)
    expression = reference.field("exp") + reference.offsets
    return interpolate_rows(expression, positions), interpolate_rows(reference.frames, positions)


def apply_reference(motion: Motion, reference: Motion, amount=1.0, parts=("expression",)) -> Motion:
    """Move the motion toward a reference face (Motion from Image, or a saved expression) by ``amount`` (a number,
    keyframes or pairs as for ``edit_face``; 1: all the way), measured from the motion's anchor (the face it
    drives from):

    - ``pose``: head pitch/yaw/roll turn by the reference's angles minus the anchor's;
    - ``expression``: every keypoint but the lips takes the reference's expression (an offset);
    - ``mouth``: the lips (``LIP_KEYPOINTS``) take the reference's mouth shape, on top of the speech.
    """
    unknown = sorted(set(parts) - set(REFERENCE_PARTS))
    if unknown:
        raise FaceEditError(f"unknown part {', '.join(map(repr, unknown))} to take from the reference; the parts "
                            f"are {', '.join(REFERENCE_PARTS)}")
    weight = amount_curve(amount, len(motion), motion.fps, "reference amount")
    if not parts or not bool((weight != 0).any()):
        return motion
    expression, frames = reference_expression(reference, len(motion), motion.fps)
    lips = torch.zeros(21, 3, dtype=torch.bool)
    lips[list(LIP_KEYPOINTS)] = True
    lips = lips.reshape(EXP_DIM)
    mask = torch.zeros(EXP_DIM, dtype=torch.bool)
    if "expression" in parts:
        mask |= ~lips
    if "mouth" in parts:
        mask |= lips
    out = motion
    if mask.any():
        change = (expression - motion.anchor[FIELDS["exp"]]) * mask
        out = out.with_offsets(out.offsets + weight[:, None] * change)
    if "pose" in parts:
        anchor = Motion(motion.anchor[None])
        turns = {name: weight * (Motion(frames).degrees(name) - anchor.degrees(name)) for name in ("pitch", "yaw",
                                                                                                 "roll")}
        out = offset_pose(out, **turns)
    return out.with_frames(out.frames, reference={"parts": list(parts), "amount": describe_amount(amount),
                                                  "source": reference.metadata.get("source")})
