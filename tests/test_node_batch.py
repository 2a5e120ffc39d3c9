"""Many portraits and clips in one graph: the folder loaders, Register Portrait mapped over their list, and Talking
Head Batch, run with ComfyUI's list calling convention (comfy_stubs.run_node) on the small fake release."""

import importlib
import math

import av
import numpy as np
import pytest
import soundfile
import torch
from comfy_stubs import InterruptProcessingException, combo_options, constants, install, load_pack, register, run_node
from PIL import Image

from ditto_core.testing.fake_release import copy_release

EVERY = "every portrait × every clip"
REGISTER = constants(batch_mode="first image", face_index=0, crop="custom", crop_scale=2.3, crop_vy_ratio=-0.125,
                     max_size=0, detection_threshold=0.5)
# speech clips: name → (seconds, sample rate, channels)
CLIPS = {"hello.wav": (0.4, 44100, 2), "bye.flac": (0.2, 16000, 1)}


def batch_settings(**changes):
    settings = dict(pairing="pairs", emotion="as released", seed=3, steps=1, overlap=-1, smoothing=-1, paste_back=True,
                    stitching="as released", batch_size=8, precision="auto", filename_prefix="batch/take", crf=23,
                    emotion_timeline="", fps=25.0)
    return constants(**{**settings, **changes})


def _photo(height, width, seed):
    return np.random.default_rng(seed).integers(60, 200, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def comfy(tmp_path):
    state = install(tmp_path)
    pack = load_pack()
    inputs = tmp_path / "input"
    faces, speech = inputs / "faces", inputs / "speech"
    (faces / "sub").mkdir(parents=True)
    speech.mkdir()
    Image.fromarray(_photo(72, 64, 1)).save(faces / "b_face.png")
    Image.fromarray(_photo(64, 80, 2)).save(faces / "A_face.png")
    Image.fromarray(_photo(64, 64, 3)).save(faces / "sub" / "c_face.png")  # a sub-folder's: not listed
    Image.fromarray(_photo(64, 64, 4)).save(faces / ".hidden.png")
    (faces / "notes.txt").write_text("not an image")
    for name, (seconds, rate, channels) in CLIPS.items():
        samples = np.random.default_rng(len(name)).uniform(-0.3, 0.3, (round(seconds * rate), channels))
        soundfile.write(speech / name, samples.astype(np.float32), rate, subtype="FLOAT" if name.endswith("wav") else "PCM_24")
    (speech / "script.txt").write_text("hello, bye")
    nodes = register(pack)
    return pack, state, tmp_path, nodes


@pytest.fixture
def graph(comfy, small_release):
    pack, state, base, nodes = comfy
    copy_release(small_release, base / "models" / "ditto")
    (models,) = nodes["DittoLoadModels"].execute(release="ditto_pytorch", device="cpu")
    (images, portrait_names), _ = run_node(nodes["DittoLoadPortraits"], constants(folder="faces"))
    (portraits,), _ = run_node(nodes["DittoRegisterPortrait"], {"models": [models], "image": images, **REGISTER})
    (clips, clip_names), _ = run_node(nodes["DittoLoadSpeechClips"], constants(folder="speech"))
    return state, base, nodes, models, portraits, portrait_names, clips, clip_names


def _size(portrait) -> tuple[int, int]:
    """(width, height) of the portrait's frames: the video's size with paste-back."""
    return tuple(portrait.images.shape[2:0:-1])


def _frames(path) -> tuple[int, tuple[int, int]]:
    with av.open(str(path)) as video:
        frames = list(video.decode(video=0))
    return len(frames), (frames[0].width, frames[0].height)


def test_the_loaders_list_a_folder_sorted_with_names(comfy):
    pack, _, base, nodes = comfy
    folders = combo_options(register(pack)["DittoLoadPortraits"], "folder")
    assert {"faces", "faces/sub", "speech"} <= set(folders)
    (images, names), _ = run_node(nodes["DittoLoadPortraits"], constants(folder="faces"))
    assert names == ["A_face.png", "b_face.png"]  # sorted by name; hidden, sub-folder and non-image files left out
    for image, name in zip(images, names):
        expected = np.asarray(Image.open(base / "input" / "faces" / name), dtype=np.float32) / 255
        assert image.dtype == torch.float32 and image.shape == (1, *expected.shape)
        torch.testing.assert_close(image[0], torch.from_numpy(expected), rtol=0, atol=0)

    (clips, names), _ = run_node(nodes["DittoLoadSpeechClips"], constants(folder="speech"))
    assert names == ["bye.flac", "hello.wav"]
    for clip, name in zip(clips, names):
        samples, rate = soundfile.read(base / "input" / "speech" / name, dtype="float32", always_2d=True)
        assert clip["sample_rate"] == rate == CLIPS[name][1]
        assert clip["waveform"].dtype == torch.float32 and clip["waveform"].shape == (1, CLIPS[name][2], len(samples))
        torch.testing.assert_close(clip["waveform"][0], torch.from_numpy(samples.T), rtol=0, atol=0)


def test_load_portraits_turns_photos_upright_and_reruns_when_the_folder_changes(comfy):
    pack, _, base, nodes = comfy
    loader = register(pack)["DittoLoadPortraits"]
    before = loader.fingerprint_inputs("faces")
    assert loader.fingerprint_inputs("faces") == before
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned; shown rotated 90°
    Image.fromarray(_photo(40, 60, 5)).save(base / "input" / "faces" / "phone.jpg", exif=exif)
    assert loader.fingerprint_inputs("faces") != before
    (images, names), _ = run_node(nodes["DittoLoadPortraits"], constants(folder="faces"))
    assert names[-1] == "phone.jpg" and images[-1].shape == (1, 60, 40, 3)  # upright, as Load Image gives it


def test_pairs_one_video_each_named_after_the_inputs(graph):
    state, base, nodes, models, portraits, portrait_names, clips, clip_names = graph
    loads, bars = state.load_calls, len(state.progress)
    (written,), ui = run_node(nodes["DittoTalkingHeadBatch"], {
        "models": [models], "portraits": portraits, "clips": clips, "portrait_names": portrait_names,
        "clip_names": clip_names, **batch_settings(fps=30.0)})
    assert written == ["batch/take_A_face_bye_00001.mp4", "batch/take_b_face_hello_00001.mp4"]
    assert [entry["filename"] for entry in ui["images"]] == [name.split("/")[1] for name in written]
    assert ui["animated"] == [True] and {entry["subfolder"] for entry in ui["images"]} == {"batch"}
    expected = [math.ceil(CLIPS[clip][0] * 30) for clip in ("bye.flac", "hello.wav")]  # 6 and 12 frames
    sizes = [_size(p) for p in portraits]
    assert [_frames(base / "output" / name) for name in written] == list(zip(expected, sizes))
    assert state.load_calls == loads + 1  # the models put on the device once for the whole batch
    (bar,) = state.progress[bars:]  # one bar for all the videos, counting every frame
    assert bar.total == bar.value == sum(expected)
    assert sorted(p.name for p in (base / "output" / "batch").iterdir()) == [name.split("/")[1] for name in written]


def test_every_portrait_with_every_clip(graph):
    state, base, nodes, models, portraits, portrait_names, clips, clip_names = graph
    bars = len(state.progress)
    (written,), ui = run_node(nodes["DittoTalkingHeadBatch"], {
        "models": [models], "portraits": portraits, "clips": clips, "portrait_names": portrait_names,
        "clip_names": clip_names, **batch_settings(pairing=EVERY, filename_prefix="every/")})
    assert written == ["every/A_face_bye_00001.mp4", "every/A_face_hello_00001.mp4", "every/b_face_bye_00001.mp4",
                       "every/b_face_hello_00001.mp4"]
    assert [_frames(base / "output" / name)[0] for name in written] == [5, 10, 5, 10]
    (bar,) = state.progress[bars:]
    assert bar.total == bar.value == 30


def test_a_single_portrait_speaks_every_clip_numbered_and_never_overwritten(graph):
    _, base, nodes, models, portraits, _, clips, _ = graph
    inputs = {"models": [models], "portraits": portraits[:1], "portrait_names": [""], **batch_settings()}  # unlinked
    (written,), _ = run_node(nodes["DittoTalkingHeadBatch"], {**inputs, "clips": clips})
    assert written == ["batch/take_portrait1_clip1_00001.mp4", "batch/take_portrait1_clip2_00001.mp4"]
    assert [_frames(base / "output" / name) for name in written] == [(5, _size(portraits[0])), (10, _size(portraits[0]))]
    first = (base / "output" / written[0]).read_bytes()
    (again,), _ = run_node(nodes["DittoTalkingHeadBatch"], {**inputs, "clips": clips[:1]})
    assert again == ["batch/take_portrait1_clip1_00002.mp4"]
    assert (base / "output" / written[0]).read_bytes() == first  # the earlier video kept as it was


def test_a_cancel_keeps_the_finished_videos_and_no_partial_one(graph):
    state, base, nodes, models, portraits, portrait_names, clips, clip_names = graph
    one = {"models": [models], "portraits": portraits[:1], "portrait_names": portrait_names[:1]}
    state.interrupt_checks = 0
    run_node(nodes["DittoTalkingHeadBatch"], {**one, "clips": clips[:1], "clip_names": clip_names[:1],
                                              **batch_settings(filename_prefix="counted/take")})
    per_video = state.interrupt_checks  # the checks one video makes (the one before it included)
    state.interrupt_checks, state.interrupt_after = 0, per_video + 1  # stop inside the second video
    with pytest.raises(InterruptProcessingException):
        run_node(nodes["DittoTalkingHeadBatch"], {**one, "clips": clips, "clip_names": clip_names,
                                                  **batch_settings()})
    state.interrupt_after = None
    assert state.interrupt_checks == per_video + 2
    left = sorted(p.name for p in (base / "output" / "batch").iterdir())
    assert left == ["take_A_face_bye_00001.mp4"] and _frames(base / "output" / "batch" / left[0])[0] == 5


@pytest.mark.parametrize("change, message", [
    ({"portraits": []}, "the batch got no portraits"),
    ({"clips": []}, "the batch got no speech clips"),
    ({"portraits": ["p"] * 3}, r"there are 3 portraits and 2 clips; .* or choose 'every portrait × every clip' to "
                               r"render each portrait with each clip \(6 videos\)"),
    ({"portrait_names": ["a.png", "b.png", "c.png"]}, "portrait_names has 3 names for 2 portraits"),
    ({"clip_names": ["a.wav"]}, "clip_names has 1 names for 2 clips"),
    ({"seed": [1, 2]}, "seed got 2 values; the batch takes one seed for all its videos"),
])
def test_bad_lists_are_refused_before_any_work(comfy, change, message):
    pack, state, base, nodes = comfy
    batch_list_error = importlib.import_module(pack.__name__ + ".ditto_core.lists").BatchListError
    inputs = {"models": ["models"], "portraits": ["p1", "p2"], "clips": [{"waveform": torch.zeros(1, 1, 800),
                                                                         "sample_rate": 16000}] * 2,
              "portrait_names": ["a.png", "b.png"], "clip_names": ["x.wav", "y.wav"], **batch_settings(), **change}
    with pytest.raises(batch_list_error, match=message):
        run_node(nodes["DittoTalkingHeadBatch"], inputs)
    assert state.load_calls == 0 and not list((base / "output").rglob("*.mp4"))


def test_an_empty_folder_or_a_broken_file_is_refused(comfy):
    pack, _, base, nodes = comfy
    batch_list_error = importlib.import_module(pack.__name__ + ".ditto_core.lists").BatchListError
    (base / "input" / "empty").mkdir()
    (base / "input" / "empty" / "readme.txt").write_text("nothing here")
    with pytest.raises(batch_list_error, match=r"empty holds no images \(.bmp, .jpeg, .jpg, .png"):
        run_node(nodes["DittoLoadPortraits"], constants(folder="empty"))
    with pytest.raises(batch_list_error, match=r"empty holds no audio files \(.aac, .aif"):
        run_node(nodes["DittoLoadSpeechClips"], constants(folder="empty"))
    with pytest.raises(ValueError, match="outside ComfyUI's input folder"):
        run_node(nodes["DittoLoadSpeechClips"], constants(folder="../output"))
    (base / "input" / "empty" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read .*empty/broken.png as an image"):
        run_node(nodes["DittoLoadPortraits"], constants(folder="empty"))


def test_validation_gets_lists_and_checks_each_value(comfy):
    pack, _, _, _ = comfy
    node = register(pack)["DittoTalkingHeadBatch"]
    assert node.validate_inputs(["0:neutral, 1:happy"], [30.0]) is True
    assert node.validate_inputs([None], [None]) is True  # linked inputs: checked when they arrive
    assert "unknown emotion 'bored'" in node.validate_inputs(["0:bored"], [25.0])
    assert "fps must be" in node.validate_inputs([""], [5.0])
    spec = node.INPUT_TYPES()
    assert combo_options(node, "pairing") == ["pairs", EVERY]
    talking = register(pack)["DittoTalkingHeadVideo"].INPUT_TYPES()
    shared = {name for name in talking["required"] if name not in ("portrait", "audio", "filename_prefix")}
    assert all(spec["required"][name] == talking["required"][name] for name in shared)  # the same widgets
    assert spec["optional"]["fps"] == talking["optional"]["fps"]
