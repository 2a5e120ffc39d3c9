"""The ComfyUI nodes, called directly as ComfyUI would call them, on a fake release."""

import importlib
import shutil
import sys

import numpy as np
import pytest
import torch
from comfy_stubs import InterruptProcessingException, combo_options, install, load_pack, register

from ditto_core.testing.fake_hub import FakeHub
from ditto_core.testing.fake_release import copy_release


@pytest.fixture
def comfy(tmp_path):
    state = install(tmp_path)
    pack = load_pack()
    return pack, state, tmp_path


@pytest.fixture
def graph(comfy, small_release):
    pack, state, base = comfy
    copy_release(small_release, base / "models" / "ditto")
    nodes = register(pack)
    (models,) = nodes["DittoLoadModels"].execute(release="ditto_pytorch", device="auto")
    image = torch.from_numpy(np.random.default_rng(0).integers(60, 200, (1, 160, 200, 3)).astype(np.float32) / 255)
    audio = {"waveform": torch.randn(1, 2, 44100 * 2 // 5) * 0.1, "sample_rate": 44100}  # 0.4 s stereo
    return pack, state, base, nodes, models, image, audio


def test_pack_registers_its_nodes_through_the_v3_entrypoint(comfy):
    pack, _, _ = comfy
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")  # ComfyUI would take the V1 path and ignore comfy_entrypoint
    assert pack.WEB_DIRECTORY == "./web"
    nodes = register(pack)
    assert len(nodes) == 25
    for node_id, cls in nodes.items():
        schema = cls.GET_SCHEMA()
        assert node_id == cls.__name__ and node_id.startswith("Ditto"), node_id
        assert "Ditto" in schema.display_name and schema.description and schema.category == "Ditto"
        assert schema.search_aliases, f"{node_id} has no search aliases"
        inputs = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for input_name, (kind, options) in inputs.get(section, {}).items():
                if kind in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                    assert "default" in options or kind == "COMBO", (node_id, input_name)
    essentials = {node_id for node_id, cls in nodes.items() if cls.GET_SCHEMA().essentials_category}
    assert essentials == {"DittoLoadModels", "DittoRegisterPortrait", "DittoTalkingHeadVideo"}


@pytest.mark.parametrize("version", ["0.18.1", None])  # None: a ComfyUI from before comfyui_version.py
def test_an_older_comfyui_gets_one_line_and_no_nodes(tmp_path, monkeypatch, caplog, version):
    install(tmp_path)
    if version is None:
        monkeypatch.delitem(sys.modules, "comfyui_version")
        monkeypatch.setitem(sys.modules, "comfy_api.latest", None)  # and no V3 API: importing it would raise
    else:
        monkeypatch.setattr(sys.modules["comfyui_version"], "__version__", version)
    with caplog.at_level("WARNING"):
        pack = load_pack()
    assert not hasattr(pack, "comfy_entrypoint") and not hasattr(pack, "WEB_DIRECTORY")
    assert pack.NODE_CLASS_MAPPINGS == {}  # ComfyUI's V1 path: nothing registered, no warning of its own
    assert [r.getMessage() for r in caplog.records] == [
        f"ComfyUI-Ditto needs ComfyUI 0.19.0 or newer (this is {version or 'older'}): update ComfyUI to use the "
        f"Ditto nodes; none are registered."]
    assert not list((tmp_path / "input").iterdir())  # nothing staged either


def test_end_to_end_graph(graph):
    pack, state, base, nodes, models, image, audio = graph
    (portrait,) = nodes["DittoRegisterPortrait"].execute(models, image, "first image", 0, "custom", 2.3, -0.125, 1920, 0.5)
    features, passed_audio = nodes["DittoEncodeAudio"].execute(models, audio)
    assert features.num_frames == 10 and passed_audio is audio

    sampled = nodes["DittoSampleMotion"].execute(models, portrait, features, "happy", 5, 2, 10, 3, "0:neutral,0.2:sad")
    (motion,) = sampled.result
    curves = sampled.ui["ditto_motion"][0]
    assert len(motion) == 10 and len(curves["yaw"]) == 10 and len(curves["mouth"]) == 10
    assert motion.metadata["seed"] == 5

    (edited,) = nodes["DittoEditPose"].execute(motion, 0.0, 10.0, 0.0, 1.0, yaw_curve="0:0, 0.4:10")
    yaw_delta = edited.degrees("yaw") - motion.degrees("yaw")
    # random fake weights give flat pose distributions that lose some mass at the ±97.5° ends when shifted, so
    # only the direction is checked here (test_controls checks exact shifts on peaked distributions)
    assert 0 < yaw_delta[0] < yaw_delta[-1]
    (edited,) = nodes["DittoEditExpression"].execute(edited, 1.5, 1.0, "off", 2.0, 0.0)
    (edited,) = nodes["DittoSmoothMotion"].execute(edited, 3, "pose")
    (edited,) = nodes["DittoRelaxOnSilence"].execute(edited, audio, 1.0, -45.0, -25.0)
    (edited,) = nodes["DittoFadeMotion"].execute(models, edited, 2, 2, "expression", "source")

    frames, audio_out, video, crops, placement, fps = nodes["DittoRender"].execute(models, portrait, edited, True,
                                                                                  "on", 3, "auto", audio)
    assert fps == 25.0
    assert frames.shape == (10, 160, 200, 3) and frames.dtype == torch.float32
    assert crops.shape == (10, 512, 512, 3) and len(placement) == 10 and placement.frame_size == (160, 200)
    assert 0 <= frames.min() and frames.max() <= 1
    assert audio_out is audio
    assert video.get_components().images is frames and video.get_components().frame_rate == 25

    ui = nodes["DittoRenderVideo"].execute(models, portrait, edited, False, "on", 4, "bf16", "talks/../../clip", 23, audio)
    entry = ui.ui["images"][0]
    assert ui.ui["animated"] == [True] and entry["type"] == "output"
    written = base / "output" / entry["subfolder"] / entry["filename"]
    assert written.is_file() and written.suffix == ".mp4" and written.stat().st_size > 0
    assert base / "output" in written.parents  # "../.." stayed inside output/
    assert b"cabac=1 " in written.read_bytes()  # x264's settings as it wrote them: auto is veryfast off CUDA
    ui = nodes["DittoRenderVideo"].execute(models, portrait, edited, False, "on", 4, "bf16", "talks/fast", 23, audio,
                                           encoder="libx264", preset="ultrafast")
    entry = ui.ui["images"][0]
    assert b"cabac=0 " in (base / "output" / entry["subfolder"] / entry["filename"]).read_bytes()

    saved = nodes["DittoSaveMotion"].execute(edited, "motions/take")
    again = nodes["DittoSaveMotion"].execute(edited, "motions/take")
    files = sorted((base / "output" / "motions").iterdir())
    assert [f.name for f in files] == ["take_00001.safetensors", "take_00002.safetensors"]  # never overwritten
    assert "saved motions/take_00001.safetensors" in saved.ui["text"][0]
    assert again.ui["text"][0].endswith("take_00002.safetensors")

    shutil.copy(files[0], base / "input" / "take.safetensors")
    assert "take.safetensors" in combo_options(register(pack)["DittoLoadMotion"], "motion_file")
    (loaded,) = nodes["DittoLoadMotion"].execute("take.safetensors")
    torch.testing.assert_close(loaded.frames, edited.frames, rtol=0, atol=0)
    assert isinstance(register(pack)["DittoLoadMotion"].fingerprint_inputs("take.safetensors"), str)
    assert state.progress and all(bar.value == bar.total for bar in state.progress)


def test_interrupt_mid_render_leaves_no_file(graph):
    _, state, base, nodes, models, image, audio = graph
    (portrait,) = nodes["DittoRegisterPortrait"].execute(models, image, "first image", 0, "custom", 2.3, -0.125, 1920, 0.5)
    from ditto_core.motion import Motion

    motion = Motion(torch.zeros(12, 265))
    state.interrupt_checks, state.interrupt_after = 0, 2
    with pytest.raises(InterruptProcessingException):
        nodes["DittoRenderVideo"].execute(models, portrait, motion, True, "on", 2, "auto", "ditto/cut", 18, None)
    assert state.interrupt_checks == 3  # stopped at the third batch
    assert not any(p.is_file() for p in (base / "output").rglob("*"))


def test_render_nodes_choose_the_precision(graph):
    from ditto_core.motion import Motion

    pack, _, _, nodes, models, image, _ = graph
    for name in ("DittoRender", "DittoRenderVideo", "DittoTalkingHeadVideo"):
        _, spec = register(pack)[name].INPUT_TYPES()["required"]["precision"]
        assert spec["options"] == ["auto", "fp32", "bf16", "fp16"] and spec["default"] == "auto"
    (portrait,) = nodes["DittoRegisterPortrait"].execute(models, image, "first image", 0, "custom", 2.3, -0.125, 1920, 0.5)
    motion = Motion(torch.randn(2, 265, generator=torch.Generator().manual_seed(0)) * 0.1)
    fp32, bf16 = (nodes["DittoRender"].execute(models, portrait, motion, False, "on", 2, p)[0] for p in ("fp32", "bf16"))
    options = models.render_options(stitching=True, batch_size=2, paste_back=False, precision="fp32")
    expected = torch.from_numpy(np.stack(list(models.render(portrait, motion, options)))).float() / 255
    torch.testing.assert_close(fp32, expected, rtol=0, atol=0)
    assert not torch.equal(fp32, bf16)


def test_talking_head_video_node_streams_the_same_motion_into_an_mp4(graph):
    import av

    _, state, base, nodes, models, image, audio = graph
    (portrait,) = nodes["DittoRegisterPortrait"].execute(models, image, "first image", 0, "custom", 2.3, -0.125, 1920, 0.5)
    features, _ = nodes["DittoEncodeAudio"].execute(models, audio)
    (sampled,) = nodes["DittoSampleMotion"].execute(models, portrait, features, "happy", 5, 2, 10, 3, "0:neutral,0.2:sad").result
    out = nodes["DittoTalkingHeadVideo"].execute(models, portrait, audio, "happy", 5, 2, 10, 3, True, "on", 4, "auto",
                                                "streamed/take", 23, "0:neutral,0.2:sad")
    (motion,) = out.result
    torch.testing.assert_close(motion.frames, sampled.frames, rtol=0, atol=0)
    assert motion.metadata["seed"] == 5 and len(out.ui["ditto_motion"][0]["yaw"]) == 10
    entry = out.ui["images"][0]
    with av.open(str(base / "output" / entry["subfolder"] / entry["filename"])) as video:
        assert sorted(s.type for s in video.streams) == ["audio", "video"]
        frames = list(video.decode(video=0))
    assert len(frames) == 10 and (frames[0].width, frames[0].height) == (200, 160)
    assert state.progress[-1].value == state.progress[-1].total == 10

    state.interrupt_checks, state.interrupt_after = 0, 1
    with pytest.raises(InterruptProcessingException):
        nodes["DittoTalkingHeadVideo"].execute(models, portrait, audio, "happy", 5, 2, 10, 3, True, "on", 4, "auto",
                                              "streamed/cut", 23)
    state.interrupt_after = None
    assert [p.name for p in (base / "output" / "streamed").iterdir()] == [entry["filename"]]  # nothing left


def test_motion_from_video_and_combinations(graph):
    _, _, _, nodes, models, _, _ = graph
    video = torch.from_numpy(np.random.default_rng(1).integers(60, 200, (6, 96, 96, 3)).astype(np.float32) / 255)
    (motion,) = nodes["DittoMotionFromVideo"].execute(models, video, 30.0, 1)
    assert len(motion) == 5 and motion.fps == 25.0  # 6 frames at 30 fps → 5 at 25 fps
    (joined,) = nodes["DittoConcatMotion"].execute(motion, motion)
    assert len(joined) == 10
    (part,) = nodes["DittoSliceMotion"].execute(joined, 3, 0)
    torch.testing.assert_close(part.frames, joined.frames[3:])
    (mixed,) = nodes["DittoBlendMotion"].execute(part, part.with_frames(part.frames + 1), 1.0, "ramp a→b")
    torch.testing.assert_close(mixed.frames[-1], part.frames[-1] + 1)
    torch.testing.assert_close(mixed.frames[0], part.frames[0])
    with pytest.raises(ValueError, match="cannot blend motions of 7 and 5 frames"):
        nodes["DittoBlendMotion"].execute(part, motion, 0.5, "constant")


def test_register_a_video_source(graph):
    _, _, _, nodes, models, _, _ = graph
    frames = torch.from_numpy(np.random.default_rng(2).integers(60, 200, (3, 128, 128, 3)).astype(np.float32) / 255)
    (video,) = nodes["DittoRegisterPortrait"].execute(models, frames, "video source", 0, "custom", 2.3, -0.125, 1920, 0.5)
    (still,) = nodes["DittoRegisterPortrait"].execute(models, frames, "first image", 0, "custom", 2.3, -0.125, 1920, 0.5)
    assert video.num_frames == 3 and still.num_frames == 1


def test_widget_validation(comfy):
    pack, _, _ = comfy
    sample = register(pack)["DittoSampleMotion"]
    assert sample.validate_inputs("0:neutral, 2:happy") is True
    assert "unknown emotion 'bored'" in sample.validate_inputs("0:bored")
    assert "cannot read the emotion timeline" in sample.validate_inputs("zero:happy")
    relax = register(pack)["DittoRelaxOnSilence"]
    assert relax.validate_inputs(-20.0, -40.0) == "silence_db must be below speech_db"
    load = register(pack)["DittoLoadMotion"]
    assert "not found" in load.validate_inputs("missing.safetensors")
    assert "outside ComfyUI's input folder" in load.validate_inputs("../../etc/passwd")  # an answer, no traceback


def test_load_models_node_offers_release_folders(comfy, small_release):
    pack, _, base = comfy
    node_cls = register(pack)["DittoLoadModels"]
    assert combo_options(node_cls, "release") == ["ditto_pytorch"]  # offered before download
    copy_release(small_release, base / "models" / "ditto" / "ditto-talkinghead")
    assert "ditto-talkinghead/ditto_pytorch" in combo_options(node_cls, "release")
    (models,) = node_cls.execute(release="ditto-talkinghead/ditto_pytorch", device="cpu")
    assert models.networks.decoder.config.in_channels == 16  # the small release's width, read from the file


def test_load_models_node_explains_missing_files(comfy):
    pack, _, base = comfy
    checkpoint_error = importlib.import_module(pack.__name__ + ".ditto_core.models").CheckpointError
    with pytest.raises(checkpoint_error) as err:
        register(pack)["DittoLoadModels"].execute(release="ditto_pytorch", device="cpu")
    message = str(err.value)
    assert str(base / "models" / "ditto" / "ditto_pytorch" / "models" / "lmdm_v0.4_hubert.pth") in message
    assert "hf download digital-avatar/ditto-talkinghead" in message
    assert "download_missing" in message


def test_load_models_node_downloads_on_request(comfy, small_release, monkeypatch):
    pack, comfy_module, base = comfy
    with FakeHub(small_release) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        node = register(pack)["DittoLoadModels"]
        comfy_module.interrupt_after = 2  # the user cancels during the download
        with pytest.raises(InterruptProcessingException):
            node.execute(release="ditto_pytorch", device="cpu", download_missing=True)
        target = base / "models" / "ditto"
        left = [p for p in target.rglob("*") if p.is_file()]
        assert len(left) == 2  # the files finished before the cancel, each whole; no partial file
        for path in left:
            assert path.read_bytes() == (small_release / path.relative_to(target)).read_bytes()
        comfy_module.interrupt_after = None
        (models,) = node.execute(release="ditto_pytorch", device="cpu", download_missing=True)
    assert models.networks.decoder.config.in_channels == 16
    assert (target / "ditto_pytorch" / "release.json").is_file()


def test_cuda_request_without_cuda_is_explained(comfy, small_release):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    pack, _, base = comfy
    copy_release(small_release, base / "models" / "ditto")
    with pytest.raises(ValueError, match="no CUDA device; choose the cpu device"):
        register(pack)["DittoLoadModels"].execute(release="ditto_pytorch", device="cuda")


def test_no_placeholder_file_shows_while_a_video_is_written(comfy):
    pack, _, base = comfy
    render = importlib.import_module(pack.__name__ + ".nodes.render")
    write_mp4 = importlib.import_module(pack.__name__ + ".ditto_core.video").write_mp4
    folder = base / "output" / "ditto"
    seen = []

    def frames():
        for _ in range(3):
            seen.append(sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")))
            yield np.zeros((32, 32, 3), np.uint8)

    (folder / "clip_00001.mp4").parent.mkdir(parents=True, exist_ok=True)
    (folder / "clip_00001.mp4").write_bytes(b"a user's earlier video")
    ui, count = render._save_video("ditto/clip", lambda path: write_mp4(path, frames(), 25.0, None))
    assert count == 3 and seen == [["clip_00001.mp4"]] * 3  # nothing new visible until the video is complete
    assert ui["images"][0]["filename"] == "clip_00002.mp4" and (folder / "clip_00002.mp4").stat().st_size > 0
    assert (folder / "clip_00001.mp4").read_bytes() == b"a user's earlier video"


def test_networks_are_under_comfyui_model_management(graph):
    pack, state, base, nodes, models, image, audio = graph
    patcher = models.patcher
    held = dict(patcher.model.items())
    assert set(held) == {"appearance_extractor", "motion_extractor", "warp_network", "decoder", "stitch_network",
                         "lmdm"}
    assert all(held[name] is getattr(models.networks, name) for name in held)  # the very modules that compute
    assert patcher.model_size() == sum(p.numel() * 4 for p in patcher.model.parameters())
    calls = state.load_calls
    (portrait,) = nodes["DittoRegisterPortrait"].execute(models, image, "first image", 0, "as released", 2.3,
                                                          -0.125, 0, 0.5)
    assert state.load_calls == calls + 1 and state.loaded_models == [patcher]  # asked for before computing
    sys.modules["comfy.model_management"].unload_all_models()  # "Unload models" in ComfyUI's menu
    assert state.loaded_models == [] and patcher.model.device == patcher.offload_device
    features, _ = nodes["DittoEncodeAudio"].execute(models, audio)
    motion = nodes["DittoSampleMotion"].execute(models, portrait, features, "happy", 1, 1, 10, 1).result[0]
    assert state.loaded_models == [patcher] and len(motion) == features.num_frames  # loaded again when needed


def test_render_nodes_resample_to_another_frame_rate(graph):
    pack, state, base, nodes, models, image, audio = graph
    (portrait,) = nodes["DittoRegisterPortrait"].execute(models, image, "first image", 0, "as released", 2.3,
                                                          -0.125, 0, 0.5)
    features, _ = nodes["DittoEncodeAudio"].execute(models, audio)
    motion = nodes["DittoSampleMotion"].execute(models, portrait, features, "happy", 1, 1, 10, 1).result[0]
    frames, _, video, _, _, fps = nodes["DittoRender"].execute(models, portrait, motion, True, "on", 4, "fp32", audio,
                                                              fps=50.0)
    assert len(frames) == 2 * len(motion) and video.get_components().frame_rate == 50 and fps == 50.0
    node = register(pack)["DittoRender"]
    assert node.validate_inputs(fps=0.0) is True and node.validate_inputs(fps=30.0) is True
    assert "fps must be 0" in node.validate_inputs(fps=5.0)
    # a linked rate (Get Video Components' fps, say) is None when validated and checked when the node runs
    for name in ("DittoRender", "DittoRenderVideo", "DittoTalkingHeadVideo"):
        assert register(pack)[name].validate_inputs(fps=None) is True
    with pytest.raises(ValueError, match="between 10 and 60 fps, got 5"):
        nodes["DittoRender"].execute(models, portrait, motion, True, "on", 4, "fp32", audio, fps=5.0)


class _Curve:
    """What the Curve Editor node hands on (comfy_api's CurveInput): y at any x in [0, 1], here piecewise linear."""

    def __init__(self, *points):
        self.points = points

    def interp_array(self, xs):
        return np.interp(xs, [x for x, _ in self.points], [y for _, y in self.points])


def test_curves_from_the_curve_editor_shape_edits_over_the_clip(comfy):
    from ditto_core.motion import Motion, controls

    pack, _, _ = comfy
    nodes = register(pack)
    for node_id, names in (("DittoEditPose", ("pitch", "yaw", "roll")),
                           ("DittoEditExpression", ("mouth_amplitude", "expression_amplitude", "gaze_horizontal",
                                                    "gaze_vertical"))):
        optional = nodes[node_id].INPUT_TYPES()["optional"]
        for name in names:
            assert optional[f"{name}_over_time"][0] == "CURVE" and optional[f"{name}_over_time"][1]["forceInput"]
    motion = Motion(torch.randn(9, 265, generator=torch.Generator().manual_seed(3)) * 0.1)
    ramp, fall = _Curve((0, 0), (1, 1)), _Curve((0, 1), (1, 0))
    (posed,) = nodes["DittoEditPose"].execute(motion, 0.0, 8.0, 0.0, 1.0, yaw_curve="0:1", yaw_over_time=ramp)
    # y scales the widget (0° at the first frame, 8° at the last) and the text keyframes still add on top
    assert torch.equal(posed.frames, controls.offset_pose(motion, yaw=torch.linspace(0, 8, 9) + 1).frames)
    (expressed,) = nodes["DittoEditExpression"].execute(motion, 2.0, 1.0, "as sampled", 4.0, 0.0,
                                                        mouth_amplitude_over_time=fall, gaze_horizontal_over_time=ramp)
    expected = controls.offset_gaze(controls.scale_mouth(controls.scale_expression(motion, 1.0),
                                                         2 * torch.linspace(1, 0, 9)), torch.linspace(0, 4, 9), 0.0)
    assert torch.equal(expressed.frames, expected.frames)
    (unshaped,) = nodes["DittoEditExpression"].execute(motion, 2.0, 1.0, "as sampled", 4.0, 0.0)
    assert not torch.equal(unshaped.frames, expressed.frames)
