"""Each control changes the values it names, by the amount it says, and nothing else."""

import numpy as np
import pytest
import torch

from ditto_core.audio import load_audio
from ditto_core.keypoints import shift_bins
from ditto_core.motion import Motion
from ditto_core.motion.controls import (
    fade,
    freeze_eyes,
    offset_gaze,
    offset_pose,
    relax,
    scale_expression,
    scale_mouth,
    scale_pose,
    smooth,
    speech_activity,
)
from ditto_core.motion.drive import EYE_KEYPOINTS, LIP_KEYPOINTS
from ditto_core.motion.motion import FIELDS


def _motion(n=40, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.standard_normal((n, 265)).astype(np.float32) * 0.2
    centres = rng.integers(25, 40, (n, 3))  # pose distributions peaked well inside the ±97.5° range
    for j, name in enumerate(("pitch", "yaw", "roll")):
        span = FIELDS[name]
        frames[:, span] += -0.5 * ((np.arange(66)[None] - centres[:, j : j + 1]) / 2.0) ** 2
    return Motion(torch.from_numpy(frames))


def _changed_columns(before: Motion, after: Motion) -> set[int]:
    return set(torch.nonzero((before.frames != after.frames).any(0)).flatten().tolist())


def _columns(*fields):
    return {c for f in fields for c in range(FIELDS[f].start, FIELDS[f].stop)}


def _exp_columns(keypoints):
    return {202 + 3 * k + c for k in keypoints for c in range(3)}


def test_offset_pose_shifts_degrees_exactly_and_touches_only_that_angle():
    m = _motion()
    out = offset_pose(m, yaw=7.5)
    torch.testing.assert_close(out.degrees("yaw"), m.degrees("yaw") + 7.5, atol=1e-3, rtol=0)
    assert _changed_columns(m, out) <= _columns("yaw")
    curve = torch.linspace(-10, 10, len(m))
    out = offset_pose(m, pitch=curve)
    torch.testing.assert_close(out.degrees("pitch"), m.degrees("pitch") + curve, atol=1e-3, rtol=0)
    assert _changed_columns(m, out) <= _columns("pitch")


def test_shift_bins_keeps_a_distribution():
    logits = torch.randn(4, 66)
    shifted = shift_bins(logits, torch.tensor([0.0, 1.5, -4.0, 30.0]))
    torch.testing.assert_close(shifted.softmax(-1).sum(-1), torch.ones(4))
    torch.testing.assert_close(shift_bins(logits, torch.zeros(4)).softmax(-1), logits.softmax(-1), atol=1e-6, rtol=0)


def test_scale_pose_scales_movement_from_the_anchor():
    m = _motion()
    out = scale_pose(m, 0.5)
    for name in ("pitch", "yaw", "roll"):
        expected = m.degrees(name)[0] + 0.5 * (m.degrees(name) - m.degrees(name)[0])
        torch.testing.assert_close(out.degrees(name), expected, atol=2e-3, rtol=0)
    assert _changed_columns(m, out) <= _columns("pitch", "yaw", "roll")


def test_scale_mouth_touches_only_lip_keypoints():
    m = _motion()
    out = scale_mouth(m, 2.0)
    lips = sorted(_exp_columns(LIP_KEYPOINTS))
    torch.testing.assert_close(out.frames[:, lips], m.anchor[lips] + 2 * (m.frames[:, lips] - m.anchor[lips]))
    assert _changed_columns(m, out) == set(lips) - {c for c in lips if (m.frames[:, c] == m.anchor[c]).all()}


def test_scale_expression_zero_returns_to_the_anchor():
    m = _motion()
    out = scale_expression(m, 0.0)
    exp = FIELDS["exp"]
    torch.testing.assert_close(out.frames[:, exp], m.anchor[exp].expand(len(m), 63))
    assert _changed_columns(m, out) <= _columns("exp")


def test_freeze_eyes_touches_only_eye_keypoints():
    m = _motion()
    out = freeze_eyes(m)
    eyes = sorted(_exp_columns(EYE_KEYPOINTS))
    torch.testing.assert_close(out.frames[:, eyes], m.anchor[eyes].expand(len(m), len(eyes)))
    assert _changed_columns(m, out) <= set(eyes)


def test_offset_gaze_touches_four_values():
    m = _motion()
    out = offset_gaze(m, horizontal=10.0, vertical=-5.0)
    assert _changed_columns(m, out) == {202 + 33, 202 + 34, 202 + 45, 202 + 46}
    torch.testing.assert_close(out.frames[:, 202 + 33] - m.frames[:, 202 + 33], torch.full((len(m),), 0.007))
    torch.testing.assert_close(out.frames[:, 202 + 34] - m.frames[:, 202 + 34], torch.full((len(m),), 0.005))


def test_smooth_touches_only_named_fields_and_reduces_jitter():
    m = _motion()
    out = smooth(m, 5, fields=("t",))
    assert _changed_columns(m, out) <= _columns("t")
    t_before, t_after = m.field("t"), out.field("t")
    assert (t_after[1:] - t_after[:-1]).abs().mean() < (t_before[1:] - t_before[:-1]).abs().mean()


def test_relax_and_fade():
    m = _motion()
    out = relax(m, 1.0)
    torch.testing.assert_close(out.field("exp"), m.anchor[FIELDS["exp"]].expand(len(m), 63))
    assert _changed_columns(m, out) <= _columns("exp")
    faded = fade(m, fade_in=10, fade_out=10)
    exp = FIELDS["exp"]
    torch.testing.assert_close(faded.frames[0, exp], m.anchor[exp])  # α = 0 at the first frame
    torch.testing.assert_close(faded.frames[5, exp], m.anchor[exp] + 0.5 * (m.frames[5, exp] - m.anchor[exp]))
    torch.testing.assert_close(faded.frames[-1, exp], m.anchor[exp])
    torch.testing.assert_close(faded.frames[10:29], m.frames[10:29])
    assert _changed_columns(m, faded) <= _columns("exp")


def test_speech_activity_follows_loudness():
    t = np.arange(16000) / 16000
    samples = np.where(t < 0.5, 0.3 * np.sin(2 * np.pi * 200 * t), 0.0).astype(np.float32)
    activity = speech_activity(load_audio(samples, 16000), 25)
    assert (activity[:12] == 1).all() and (activity[13:] == 0).all()


def test_curve_length_is_checked():
    with pytest.raises(ValueError, match="one value per frame"):
        offset_pose(_motion(10), yaw=torch.ones(3))
