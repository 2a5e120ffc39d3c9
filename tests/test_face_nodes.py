"""Edit Face, Motion from Image and Preview Frame, called as ComfyUI calls them, on a fake release."""

import numpy as np
import pytest
import torch
from comfy_stubs import constants, install, load_pack, register, run_node

from ditto_core.motion import Motion
from ditto_core.motion.face import FACE_CONTROLS, amount_curve, face_amounts
from ditto_core.testing.fake_release import copy_release

NO_FACE_EDITS = dict.fromkeys(FACE_CONTROLS, 0.0)


@pytest.fixture
def graph(tmp_path, small_release):
    install(tmp_path)
    copy_release(small_release, tmp_path / "models" / "ditto")
    nodes = register(load_pack())
    (models,) = nodes["DittoLoadModels"].execute(release="ditto_pytorch", device="auto")
    image = torch.from_numpy(np.random.default_rng(0).integers(60, 200, (1, 160, 200, 3)).astype(np.float32) / 255)
    (portrait,) = nodes["DittoRegisterPortrait"].execute(models, image, "first image", 0, "as released", 2.3, -0.125,
                                                          0, 0.5)
    motion = Motion(torch.randn(30, 265, generator=torch.Generator().manual_seed(0)) * 0.1)
    return tmp_path, nodes, models, image, portrait, motion


def test_edit_face_sliders_and_keyframe_lines(graph):
    _, nodes, _, _, _, motion = graph
    out = nodes["DittoEditFace"].execute(motion, **{**NO_FACE_EDITS, "smile": 0.5, "pupil_y": -1.0},
                                         keyframes="eyebrows = 0:0, 1:1\nsmile = 0:1, 1:0")
    (edited,) = out.result
    amounts = face_amounts(edited.offsets)
    torch.testing.assert_close(amounts["smile"], amount_curve("0:1, 1:0", 30), atol=1e-4, rtol=0)  # line wins
    torch.testing.assert_close(amounts["eyebrows"], amount_curve("0:0, 1:1", 30), atol=1e-4, rtol=0)
    torch.testing.assert_close(amounts["pupil_y"], torch.full((30,), -1.0), atol=1e-4, rtol=0)
    assert torch.equal(edited.frames, motion.frames)
    assert set(out.ui["ditto_motion"][0]["face"]) == {"smile", "eyebrows", "pupil_y"}  # drawn on the node
    (unchanged,) = nodes["DittoEditFace"].execute(motion, **NO_FACE_EDITS).result
    assert unchanged is motion


def test_edit_face_checks_its_keyframes_before_the_run(graph):
    _, nodes, _, _, _, _ = graph
    node = nodes["DittoEditFace"]
    assert node.validate_inputs(keyframes="smile = 0:0, 1:1") is True and node.validate_inputs(keyframes=None)
    assert "unknown control 'grin'" in node.validate_inputs(keyframes="grin = 0:1")
    assert "cannot read the keyframes" in node.validate_inputs(keyframes="smile = 0:0, 1")


def test_motion_from_image_then_a_reference_on_edit_face(graph):
    _, nodes, models, image, _, motion = graph
    (face,) = nodes["DittoMotionFromImage"].execute(models, image, 0.0).result
    assert len(face) == 1 and face.metadata["source"] == "image"
    assert torch.equal(face.frames, models.motion_of_image(image[0]).frames)
    (held,) = nodes["DittoMotionFromImage"].execute(models, torch.cat([image, image.flip(2)]), 0.2).result
    assert len(held) == 10 and torch.equal(held.frames[:5], face.frames.expand(5, -1))
    (taken,) = nodes["DittoEditFace"].execute(motion, **NO_FACE_EDITS, keyframes="reference = 0:0, 1.16:1",
                                              reference=face, reference_takes="expression and mouth",
                                              reference_amount=0.3).result
    change = face.field("exp")[0] - motion.anchor[202:]
    ramp = amount_curve("0:0, 1.16:1", 30)
    torch.testing.assert_close(taken.offsets, ramp[:, None] * change, atol=1e-6, rtol=0)
    (posed,) = nodes["DittoEditFace"].execute(motion, **NO_FACE_EDITS, reference=face, reference_takes="pose",
                                              reference_amount=1.0).result
    assert not torch.equal(posed.frames, motion.frames) and posed.exp_offsets is None


def test_preview_frame_equals_render_s_frame_exactly(graph):
    base, nodes, models, _, portrait, motion = graph
    edited = nodes["DittoEditFace"].execute(motion, **{**NO_FACE_EDITS, "smile": 1.0}).result[0]
    frames = nodes["DittoRender"].execute(models, portrait, edited, True, "as released", 4, "auto")[0]
    for seconds, index in ((0.0, 0), (0.5, 12), (1.0, 25), (99.0, 29)):  # past the end: the last frame
        outputs, ui = run_node(nodes["DittoPreviewFrame"], {
            "models": [models], "portrait": [portrait], "motion": [edited],
            **constants(seconds=seconds, paste_back=True, stitching="as released", batch_size=4, precision="auto")})
        (image,) = outputs[0]
        assert image.shape == (1, 160, 200, 3) and torch.equal(image[0], frames[index])
        (saved,) = ui["images"]
        assert saved["type"] == "temp" and (base / "temp" / saved["filename"]).is_file()
    assert nodes["DittoPreviewFrame"].GET_SCHEMA().is_output_node
