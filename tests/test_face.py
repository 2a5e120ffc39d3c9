"""Face edits in motion space: each control moves only its keypoints and only the expression offsets, 0 changes
nothing, keyframes ramp as written, edits compose with each other and with the other controls, and they reach
the driving keypoints on every keypoint (brows included, which the reference's masks do not pass)."""

import numpy as np
import pytest
import torch
from test_controls import _motion

from ditto_core import controls
from ditto_core.keypoints import bins_to_degrees
from ditto_core.motion import Motion
from ditto_core.motion.drive import LIP_KEYPOINTS, DriveOptions, driving_keypoints
from ditto_core.motion.face import (
    FACE_CONTROLS,
    FaceEditError,
    amount_curve,
    apply_reference,
    edit_face,
    face_amounts,
    parse_face_keyframes,
)
from ditto_core.motion.motion import FIELDS, preview_curves

# (keypoint, axis) moved by each control: written out here from the module's documentation, not read from it
DOCUMENTED = {
    "smile": {(14, 1), (20, 1), (17, 1), (17, 2), (13, 1), (16, 1), (3, 1), (7, 1)},
    "eyebrows": {(1, 0), (2, 0), (1, 1), (2, 1)},
    "wink_left": {(11, 1), (13, 1), (3, 1), (17, 0), (17, 1)},
    "wink_right": {(15, 1), (16, 1), (7, 1), (17, 0), (17, 1)},
    "eyes_open": {(11, 1), (15, 1), (13, 1), (16, 1)},
    "mouth_aaa": {(19, 1), (19, 2), (17, 1)},
    "mouth_eee": {(14, 1), (20, 1), (20, 2)},
    "mouth_woo": {(14, 1), (3, 1), (7, 1), (17, 2)},
    "pupil_x": {(11, 0), (15, 0)},
    "pupil_y": {(11, 1), (15, 1)},
}


def _moved(offsets: torch.Tensor) -> set[tuple[int, int]]:
    columns = torch.nonzero((offsets != 0).any(0)).flatten().tolist()
    return {(c // 3, c % 3) for c in columns}


def test_the_controls_are_the_ones_the_issue_names():
    assert set(FACE_CONTROLS) == set(DOCUMENTED)


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_each_control_moves_only_its_keypoints_and_only_the_expression(name):
    m = _motion()
    moved = set()
    for amount in (1.0, -0.7):
        out = edit_face(m, **{name: amount})
        assert torch.equal(out.frames, m.frames)  # pose, scale, translation, the frames' own expression untouched
        assert torch.equal(out.anchor, m.anchor)
        assert _moved(out.offsets) <= DOCUMENTED[name]
        moved |= _moved(out.offsets)
        # the same offset on every frame for a constant amount
        assert torch.equal(out.offsets, out.offsets[:1].expand_as(out.offsets))
    assert moved == DOCUMENTED[name]  # (eyebrows and pupil_x move differently each way)


def test_directions_follow_livePortrait_conventions():
    """+y is down: closing the eyes moves the upper lids (11, 15) down and the lower lids (13, 16) up; a smile
    lifts the lip corner 14 and the cheeks; raised pupils move up; wink_left closes 11 and not 15."""
    exp = lambda **a: edit_face(_motion(n=1), **a).offsets[0].reshape(21, 3)  # noqa: E731
    closed = exp(eyes_open=-1)
    assert closed[11, 1] > 0 and closed[15, 1] > 0 and closed[13, 1] < 0 and closed[16, 1] < 0
    smile = exp(smile=1)
    assert smile[14, 1] < 0 and smile[3, 1] < 0 and smile[7, 1] < 0
    assert exp(pupil_y=1)[[11, 15], 1].lt(0).all() and exp(pupil_x=1)[[11, 15], 0].gt(0).all()
    wink = exp(wink_left=1)
    assert wink[11, 1] > 0 and wink[15, 1] == 0
    # a wink closes its eye's upper lid as far as closing both eyes does
    assert wink[11, 1] == closed[11, 1] and exp(wink_right=1)[15, 1] == closed[15, 1]


def test_negative_eyebrows_knit_rather_than_mirror_the_raise():
    raised = edit_face(_motion(n=1), eyebrows=1).offsets[0].reshape(21, 3)
    knit = edit_face(_motion(n=1), eyebrows=-1).offsets[0].reshape(21, 3)
    assert raised[1, 0] == 0 and knit[1, 0] != 0 and knit[2, 0] == -knit[1, 0]
    assert not torch.equal(knit, -raised)


def test_zero_leaves_the_motion_exactly_as_it_was():
    m = _motion()
    assert edit_face(m, smile=0, eyebrows="0", wink_left="0:0, 2:0", pupil_x=[(0, 0), (1, 0)]) is m
    edited = edit_face(m, smile=0.5)
    assert edit_face(edited, mouth_aaa=0) is edited


def test_keyframes_ramp_as_written():
    m = _motion(n=100)  # 4 s at 25 fps
    out = edit_face(m, smile="0:0, 1.5:1, 3:0")
    t = np.arange(100) / 25.0
    expected = np.where(t <= 1.5, t / 1.5, np.clip((3 - t) / 1.5, 0, None))  # up to 1 at 1.5 s, down to 0 at 3 s
    lip_corner = out.offsets[:, 3 * 14 + 1].numpy()
    np.testing.assert_allclose(lip_corner, -0.02 * expected, atol=1e-7)
    pairs = edit_face(m, smile=[(0, 0), (1.5, 1), (3, 0)])
    torch.testing.assert_close(pairs.offsets, out.offsets)
    per_frame = edit_face(m, smile=torch.from_numpy(expected.astype(np.float32)))
    torch.testing.assert_close(per_frame.offsets, out.offsets)


def test_amounts_scale_linearly_on_each_side():
    m = _motion(n=1)
    one = edit_face(m, eyebrows=-1).offsets
    torch.testing.assert_close(edit_face(m, eyebrows=-2.5).offsets, 2.5 * one)
    torch.testing.assert_close(edit_face(m, smile=0.3).offsets, 0.3 * edit_face(m, smile=1).offsets)


def test_controls_compose_with_each_other():
    m = _motion()
    together = edit_face(m, smile="0:0, 1:1", eyebrows=0.5, wink_right=1)
    chained = edit_face(edit_face(edit_face(m, smile="0:0, 1:1"), eyebrows=0.5), wink_right=1)
    torch.testing.assert_close(together.offsets, chained.offsets)
    parts = [edit_face(m, **{k: v}).offsets for k, v in (("smile", "0:0, 1:1"), ("eyebrows", 0.5), ("wink_right", 1))]
    torch.testing.assert_close(together.offsets, sum(parts))
    assert len(together.metadata["face_edits"]) == 1 and len(chained.metadata["face_edits"]) == 3


def test_face_edits_commute_with_the_frame_controls_and_blinks():
    m = _motion()
    for other in (lambda x: controls.scale_mouth(x, 1.5), controls.freeze_eyes,
                  lambda x: controls.offset_pose(x, yaw=5), lambda x: controls.relax(x, 0.5)):
        a = other(edit_face(m, smile=1, eyes_open=-0.5))
        b = edit_face(other(m), smile=1, eyes_open=-0.5)
        assert torch.equal(a.frames, b.frames) and torch.equal(a.offsets, b.offsets)
    # blinks live in the frames' eye keypoints; a wink adds to them instead of replacing them
    blink = torch.zeros(63)
    blink[3 * 11 + 1] = 0.01
    frames = m.frames.clone()
    frames[10:15, FIELDS["exp"]] += blink
    blinking = m.with_frames(frames)
    winked = edit_face(blinking, wink_left=1)
    assert torch.equal(winked.frames, blinking.frames)


def test_edits_survive_slicing_joining_resampling_blending_and_files(tmp_path):
    m = edit_face(_motion(n=50), smile="0:0, 2:1")
    assert torch.equal(m.slice(10, 20).offsets, m.offsets[10:20])
    joined = m.concat(_motion(n=5))
    assert torch.equal(joined.offsets[:50], m.offsets) and torch.equal(joined.offsets[50:], torch.zeros(5, 63))
    doubled = m.resample(50.0)
    torch.testing.assert_close(doubled.offsets[1], (m.offsets[0] + m.offsets[1]) / 2)
    torch.testing.assert_close(doubled.offsets[::2], m.offsets)
    half = m.blend(_motion(n=50, seed=3), 0.5)
    torch.testing.assert_close(half.offsets, m.offsets / 2)
    loaded = Motion.load(m.save(tmp_path / "expression.safetensors"))
    assert torch.equal(loaded.offsets, m.offsets) and loaded.metadata["face_edits"] == m.metadata["face_edits"]
    plain = Motion.load(_motion(n=3).save(tmp_path / "plain.safetensors"))
    assert plain.exp_offsets is None  # files without edits (and older files) load as before


def test_a_held_still_gets_a_keyframed_expression_sequence():
    still = _motion(n=1)
    clip = edit_face(still.held(80), smile="0:0, 1:1", eyebrows="2:0, 3:1")
    assert torch.equal(clip.frames, still.frames.expand(80, -1))
    amounts = face_amounts(clip.offsets)
    torch.testing.assert_close(amounts["smile"][[0, 25, 79]], torch.tensor([0.0, 1.0, 1.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(amounts["eyebrows"][[0, 50, 79]], torch.tensor([0.0, 0.0, 1.0]), atol=1e-5, rtol=0)


def test_the_amounts_are_read_back_from_the_offsets():
    m = _motion(n=60)
    written = {"smile": "0:-0.3, 2:1.2", "eyebrows": "0:1, 2:-1", "wink_left": 0.4, "wink_right": "1:0, 2:1",
               "eyes_open": "0:1, 2:-1", "mouth_aaa": 0.8, "mouth_eee": -0.5, "mouth_woo": 0.6,
               "pupil_x": "0:-1, 2:1", "pupil_y": 0.25}
    read = face_amounts(edit_face(m, **written).offsets)
    for name, value in written.items():
        torch.testing.assert_close(read[name], amount_curve(value, 60, 25.0), atol=1e-4, rtol=0)


def test_bad_amounts_and_unknown_controls_say_what_to_write():
    m = _motion()
    with pytest.raises(FaceEditError, match="smile: cannot read the keyframes.*seconds:value"):
        edit_face(m, smile="0:0, 1.5")
    with pytest.raises(FaceEditError, match="smile: cannot read 'lots'.*number"):
        edit_face(m, smile="lots")
    with pytest.raises(FaceEditError, match="unknown face control 'grin'.*smile, eyebrows"):
        edit_face(m, grin=1)
    with pytest.raises(FaceEditError, match=r"\(seconds, value\) pairs"):
        edit_face(m, smile=[(0, 1, 2)])
    with pytest.raises(FaceEditError, match="one value per frame"):
        edit_face(m, smile=torch.zeros(3))
    with pytest.raises(FaceEditError, match="finite"):
        edit_face(m, smile=float("nan"))


def test_edits_reach_the_driving_keypoints_on_every_keypoint():
    """Driving adds the offsets after the reference's masks: x_d changes by scale × offset (the keypoint transform
    is linear in the expression), brows and cheeks included."""
    m = _motion(n=6)
    rng = np.random.default_rng(4)
    source = {name: torch.from_numpy(rng.standard_normal((1, FIELDS[name].stop - FIELDS[name].start))
                                     .astype(np.float32)) * 0.1 for name in FIELDS}
    source["scale"] = torch.full((1, 1), 1.3)
    source["kp"] = torch.from_numpy(rng.standard_normal((1, 63)).astype(np.float32)) * 0.2
    edited = edit_face(m, eyebrows="0:0, 0.2:1", smile=0.5)
    options = DriveOptions(stitching=False, eye_template=True)
    frames, sources = list(range(6)), [0] * 6
    _, before = driving_keypoints(source, (0.0, 0.0), m, frames, sources, False, options)
    _, after = driving_keypoints(source, (0.0, 0.0), edited, frames, sources, False, options)
    torch.testing.assert_close(after - before, 1.3 * edited.offsets.reshape(6, 21, 3), atol=1e-6, rtol=0)
    assert (after - before)[:, 1].abs().sum() > 0  # a brow keypoint, which the masks keep at the source's


def test_a_reference_expression_replaces_the_anchor_expression_by_the_amount():
    m = _motion(n=30)
    reference = _motion(n=1, seed=5)
    change = reference.field("exp")[0] - m.anchor[FIELDS["exp"]]
    lips = torch.zeros(21, 3, dtype=torch.bool)
    lips[list(LIP_KEYPOINTS)] = True
    lips = lips.reshape(63)
    face = apply_reference(m, reference, 0.5, ("expression",))
    assert torch.equal(face.frames, m.frames)
    torch.testing.assert_close(face.offsets, (0.5 * change * ~lips).expand(30, -1))
    mouth = apply_reference(m, reference, "0:0, 1:1", ("mouth",))
    ramp = amount_curve("0:0, 1:1", 30, 25.0)
    torch.testing.assert_close(mouth.offsets, ramp[:, None] * (change * lips))
    assert apply_reference(m, reference, 0, ("expression", "mouth", "pose")) is m


def test_a_reference_pose_turns_the_head_by_its_angles_from_the_anchor():
    m = _motion(n=20)
    reference = _motion(n=1, seed=6)
    out = apply_reference(m, reference, 1.0, ("pose",))
    for name in ("pitch", "yaw", "roll"):
        turn = bins_to_degrees(reference.frames[0, FIELDS[name]]) - bins_to_degrees(m.anchor[FIELDS[name]])
        torch.testing.assert_close(out.degrees(name), m.degrees(name) + turn, atol=2e-3, rtol=0)
    assert torch.equal(out.offsets, torch.zeros(20, 63)) and torch.equal(out.field("exp"), m.field("exp"))


def test_a_saved_edited_expression_is_a_reference_with_its_edits():
    m = _motion(n=10)
    still = edit_face(_motion(n=1, seed=7), smile=1)
    out = apply_reference(m, still, 1.0, ("expression", "mouth"))
    expected = still.field("exp")[0] + still.offsets[0] - m.anchor[FIELDS["exp"]]
    torch.testing.assert_close(out.offsets[0], expected)


def test_a_reference_sequence_plays_at_its_own_rate_and_holds_its_last_frame():
    m = _motion(n=30)
    sequence = Motion(_motion(n=5, seed=8).frames, fps=12.5)
    out = apply_reference(m, sequence, 1.0, ("expression", "mouth"))
    anchor = m.anchor[FIELDS["exp"]]
    torch.testing.assert_close(out.offsets[4], sequence.field("exp")[2] - anchor)  # frame 4 at 25 fps = 2 at 12.5
    torch.testing.assert_close(out.offsets[29], sequence.field("exp")[4] - anchor)


def test_unknown_reference_parts_are_refused():
    with pytest.raises(FaceEditError, match="unknown part 'eyes'.*pose, expression, mouth"):
        apply_reference(_motion(), _motion(n=1), 1.0, ("eyes",))


def test_the_curve_preview_shows_the_expression_amounts():
    m = edit_face(_motion(n=50), smile="0:0, 1:1", eyebrows=-0.5)
    curves = preview_curves(m)
    assert set(curves["face"]) == {"smile", "eyebrows"}
    np.testing.assert_allclose(curves["face"]["smile"], amount_curve("0:0, 1:1", 50, 25.0).numpy(), atol=1e-4)
    np.testing.assert_allclose(curves["face"]["eyebrows"], -0.5, atol=1e-4)
    assert "face" not in preview_curves(_motion(n=5))


def test_keyframe_lines_name_one_control_each():
    text = "smile = 0:0, 1.5:1, 3:0\n\n  eyebrows: 2:0, 3:1\nreference = 0:0, 1:1\npupil_x = -0.5"
    assert parse_face_keyframes(text) == {"smile": "0:0, 1.5:1, 3:0", "eyebrows": "2:0, 3:1",
                                          "reference": "0:0, 1:1", "pupil_x": "-0.5"}
    with pytest.raises(FaceEditError, match="line 2 .*unknown control 'grin'.*smile, eyebrows"):
        parse_face_keyframes("smile = 1\ngrin = 0:1")
    with pytest.raises(FaceEditError, match="smile: cannot read the keyframes"):
        parse_face_keyframes("smile = 0:0, 1")
    with pytest.raises(FaceEditError, match="line 2: smile is given twice"):
        parse_face_keyframes("smile = 1\nsmile = 2")


@pytest.mark.parametrize("amount", ["nan", "inf", "0:nan, 1:1", "0:1e39", "nan:1, 1:0", [(0, float("nan"))],
                                    [(0, "x")], torch.full((30,), float("inf"))])
def test_amounts_that_are_not_finite_numbers_name_their_control(amount):
    """Found by the independent check: these ended in an error naming no control, or a TypeError."""
    with pytest.raises(FaceEditError, match=r"^smile: "):
        controls.edit_face(Motion(torch.zeros(30, 265)), smile=amount)


def test_the_nodes_keyframe_lines_refuse_what_is_not_finite():
    with pytest.raises(FaceEditError, match=r"smile: cannot read the keyframes ' ?0:nan, 1:1'"):
        parse_face_keyframes("smile = 0:nan, 1:1")


@pytest.mark.parametrize("amount", [np.float32(0.5), torch.tensor(0.5), np.float64(0.5)])
def test_numpy_and_torch_scalars_are_numbers(amount):
    still = Motion(torch.zeros(30, 265))
    edited = controls.edit_face(still, smile=amount)
    assert torch.equal(edited.offsets, controls.edit_face(still, smile=0.5).offsets)
    assert edited.metadata["face_edits"] == [{"smile": 0.5}]
