"""The pipeline side of face editing on a fake release: one frame rendered alone equals that frame of the full
render exactly, a face's motion read from an image, and face edits reaching the pixels."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ditto_core.motion import Motion
from ditto_core.motion.drive import LIP_KEYPOINTS
from ditto_core.motion.face import edit_face, face_amounts
from ditto_core.motion.motion import keypoint_fields_to_vector
from ditto_core.pipeline import DittoPipeline
from ditto_core.portrait import NoFaceError
from ditto_core.testing.fake_release import copy_release

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipeline(small_release):
    return DittoPipeline.load(small_release)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(60, 200, (241, 300, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def portrait(pipeline, image):
    return pipeline.register(image)


def _motion(n=11, seed=1):
    frames = np.random.default_rng(seed).standard_normal((n, 265)).astype(np.float32) * 0.1
    return edit_face(Motion(torch.from_numpy(frames)), smile="0:0, 0.4:1", eyebrows=0.5)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_one_frame_equals_that_frame_of_the_full_render_exactly(pipeline, portrait, batch_size):
    motion = _motion()
    options = pipeline.render_options(batch_size=batch_size, precision="fp32")
    full = list(pipeline.render(portrait, motion, options))
    for index in (0, 5, 8, 10):  # first batch, a middle one, the short last batch (8, 9, 10 at batch size 4)
        assert np.array_equal(pipeline.render_frame(portrait, motion, index, options), full[index])


@pytest.mark.parametrize("paste_back", [False, True])
def test_one_frame_of_a_video_source_equals_the_full_render(pipeline, paste_back):
    """Each frame of a dubbing render has its own source frame: the frame is taken from its own batch as the full
    render makes it (copies of it in a batch of their own differed by a level on a real video)."""
    rng = np.random.default_rng(3)
    video = pipeline.register(rng.integers(60, 200, (5, 241, 300, 3), dtype=np.uint8), fps=25.0)
    motion = _motion(n=11)
    options = pipeline.render_options(batch_size=4, precision="fp32", paste_back=paste_back)
    full = list(pipeline.render(video, motion, options))
    for index in range(len(motion)):  # ping-pong over the 5 source frames; the last batch short
        assert np.array_equal(pipeline.render_frame(video, motion, index, options), full[index]), index


def test_a_frame_outside_the_motion_or_not_a_whole_number_is_refused(pipeline, portrait):
    with pytest.raises(IndexError, match="frame 11 is outside the motion's 11 frames"):
        pipeline.render_frame(portrait, _motion(), 11)
    with pytest.raises(TypeError, match="the frame index must be a whole number, got 2.5"):
        pipeline.render_frame(portrait, _motion(), 2.5)


def test_motion_of_image_is_the_registered_face_s_motion(pipeline, image, portrait):
    motion = pipeline.motion_of_image(image)
    fields = {name: values for name, values in portrait.keypoints.items() if name != "kp"}
    assert len(motion) == 1 and motion.metadata["source"] == "image"
    assert torch.equal(motion.frames, keypoint_fields_to_vector(fields))
    assert torch.equal(motion.anchor, motion.frames[0])


def test_the_portrait_s_own_motion_renders_the_portrait_and_edits_change_it(pipeline, image, portrait):
    still = pipeline.motion_of_image(image)
    options = pipeline.render_options(batch_size=1, precision="fp32", paste_back=False, stitching=False)
    rest = pipeline.render_frame(portrait, still, 0, options)
    no_motion = pipeline.render_frame(portrait, Motion(still.frames), 0, options)
    assert np.array_equal(rest, no_motion)
    brows = pipeline.render_frame(portrait, edit_face(still, eyebrows=1.5), 0, options)
    assert np.abs(brows.astype(int) - rest.astype(int)).max() > 0  # the brows, which the masks do not pass


def test_an_image_without_a_face_says_so(pipeline):
    blank = np.zeros((200, 200, 3), dtype=np.uint8)  # the fake detector finds no face in black
    with pytest.raises(NoFaceError, match="no face found in the 200x200 source image"):
        pipeline.motion_of_image(blank)


def test_the_readme_face_editing_example_runs_as_written(small_release, tmp_path):
    section = ROOT.joinpath("README.md").read_text().split("Face editing, from the same start", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    copy_release(small_release, tmp_path / "models" / "ditto")
    (tmp_path / "assets").symlink_to(ROOT / "assets")
    (tmp_path / "output").mkdir()
    script = block + "\nimport numpy\nnumpy.save('frame.npy', frame)\nmotion.save('output/edited.safetensors')\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    frame = np.load(tmp_path / "frame.npy")
    assert frame.dtype == np.uint8 and frame.ndim == 3
    edited = Motion.load(tmp_path / "output" / "edited.safetensors")
    expression = Motion.load(tmp_path / "output" / "expression.safetensors")
    lips = torch.zeros(21, 3, dtype=torch.bool)
    lips[list(LIP_KEYPOINTS)] = True
    ramp = torch.clamp(torch.arange(len(edited)) / 25.0, max=1)[:, None] * 0.8  # "0:0, 1:0.8"
    taken = ramp * (expression.field("exp")[0] - edited.anchor[202:]) * ~lips.reshape(63)
    amounts = face_amounts(edited.offsets - taken)
    assert abs(float(amounts["smile"][40]) - 1) < 1e-3 and abs(float(amounts["eyebrows"][-1]) - 1) < 1e-3
    assert edited.metadata["reference"]["parts"] == ["expression"]
