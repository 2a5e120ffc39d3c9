"""The sample inputs the templates use: staged into ComfyUI's input folder once, never over a user's file, and the
generated ones (driving video, nod motion) valid."""

import importlib.util
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


samples = _module(ROOT / "nodes" / "samples.py", "ditto_samples_under_test")
make_samples = _module(ASSETS / "make_samples.py", "ditto_make_samples_under_test")


def _files(folder: Path) -> list[str]:
    """Every file under ``folder``, as "/"-separated paths relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_every_sample_ships_in_assets():
    for name, asset in samples.SAMPLE_INPUTS.items():
        assert name.startswith("ditto_") and (ASSETS / asset).is_file(), name
    assert "make_samples.py" in (ASSETS / "README.md").read_text()
    for asset in samples.SAMPLE_INPUTS.values():
        assert f"`{asset}`" in (ASSETS / "README.md").read_text(), f"assets/README.md does not say where {asset} is from"


def test_staging_copies_each_sample_once(tmp_path):
    target = tmp_path / "input"  # made when missing
    first = samples.stage_sample_inputs(target)
    assert first == {name: "copied" for name in samples.SAMPLE_INPUTS}
    for name, asset in samples.SAMPLE_INPUTS.items():
        assert (target / name).read_bytes() == (ASSETS / asset).read_bytes()
    times = {name: (target / name).stat().st_mtime_ns for name in samples.SAMPLE_INPUTS}
    again = samples.stage_sample_inputs(target)
    assert again == {name: "present" for name in samples.SAMPLE_INPUTS}
    assert times == {name: (target / name).stat().st_mtime_ns for name in samples.SAMPLE_INPUTS}  # not rewritten
    assert _files(target) == sorted(samples.SAMPLE_INPUTS)  # no temporary files left


def test_staging_never_overwrites_a_users_file(tmp_path, caplog):
    target = tmp_path / "input"
    target.mkdir()
    (target / "ditto_portrait.jpg").write_bytes(b"my own picture")
    (target / "ditto_speech.wav").mkdir()  # a folder of that name
    with caplog.at_level(logging.INFO, logger="ComfyUI-Ditto"):
        result = samples.stage_sample_inputs(target)
    assert result["ditto_portrait.jpg"] == "kept" and result["ditto_speech.wav"] == "kept"
    assert (target / "ditto_portrait.jpg").read_bytes() == b"my own picture"
    assert (target / "ditto_speech.wav").is_dir()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([m for m in warnings if "ditto_portrait.jpg" in m]) == 1
    assert all(result[name] == "copied" for name in samples.SAMPLE_INPUTS
               if name not in ("ditto_portrait.jpg", "ditto_speech.wav"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ComfyUI-Ditto"):
        samples.stage_sample_inputs(target)  # idempotent: the same answer, nothing copied, one line per kept file
    assert not [r for r in caplog.records if "copied" in r.getMessage()]
    assert (target / "ditto_portrait.jpg").read_bytes() == b"my own picture"


def test_a_file_named_like_the_sample_folder_is_left_alone(tmp_path):
    target = tmp_path / "input"
    target.mkdir()
    (target / samples.BATCH_FOLDER).write_bytes(b"my own file")
    result = samples.stage_sample_inputs(target)
    in_folder = {name for name in samples.SAMPLE_INPUTS if name.startswith(samples.BATCH_FOLDER + "/")}
    assert in_folder and {result[name] for name in in_folder} == {"kept"}
    assert {result[name] for name in set(samples.SAMPLE_INPUTS) - in_folder} == {"copied"}
    assert (target / samples.BATCH_FOLDER).read_bytes() == b"my own file"


def test_a_missing_asset_is_reported_not_raised(tmp_path):
    result = samples.stage_sample_inputs(tmp_path / "input", assets=tmp_path / "no-assets")
    assert set(result.values()) == {"no asset"} and not list((tmp_path / "input").iterdir())


def test_loading_the_pack_stages_the_samples(tmp_path):
    import comfy_stubs

    comfy_stubs.install(tmp_path)
    nodes = comfy_stubs.register(comfy_stubs.load_pack())  # the extension's on_load stages them
    assert _files(tmp_path / "input") == sorted(samples.SAMPLE_INPUTS)
    motions = comfy_stubs.combo_options(nodes["DittoLoadMotion"], "motion_file")
    assert "ditto_nod.safetensors" in motions


def test_the_driving_video_decodes_at_25_fps():
    import av

    with av.open(str(ASSETS / "driving.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and float(stream.average_rate) == 25.0
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == round(make_samples.DRIVING_SECONDS * make_samples.FPS) == 75
    assert frames[0].shape == (make_samples.DRIVING_SIZE, make_samples.DRIVING_SIZE, 3)
    # it moves, gently: frames differ from the first, and no grey border comes into view
    changes = [np.abs(f.astype(int) - frames[0].astype(int)).mean() for f in frames]
    assert max(changes) > 3 and changes[0] == 0
    assert all((np.abs(f.astype(int) - 128).sum(-1) == 0).mean() < 0.01 for f in frames)


def test_the_driving_frames_start_and_end_at_rest():
    assert make_samples.driving_pose(0.0) == (0.0, 0.0, 0.0, 0.0)
    assert all(abs(v) <= 1 for t in np.linspace(0, 3, 31) for v in make_samples.driving_pose(float(t)))


def test_the_nod_motion_loads_and_is_the_generators():
    from ditto_core.motion import Motion
    from ditto_core.motion.motion import FIELDS

    motion = Motion.load(ASSETS / "nod.safetensors")
    assert len(motion) == 100 and motion.fps == 25.0
    anchor = Motion(motion.anchor[None])
    for name in ("pitch", "yaw", "roll"):
        assert abs(float(anchor.degrees(name)[0])) < 1e-3  # a neutral, frontal anchor
    assert float(anchor.field("scale")[0, 0]) == pytest.approx(1.5)
    assert torch.equal(motion.field("exp"), motion.anchor[FIELDS["exp"]].expand(100, 63))  # no expression change
    assert torch.equal(motion.field("t"), motion.anchor[FIELDS["t"]].expand(100, 3))
    assert torch.equal(motion.field("scale"), anchor.field("scale").expand(100, 1))
    pitch, yaw, roll = (motion.degrees(name) for name in ("pitch", "yaw", "roll"))
    assert 5 < float(pitch.max()) < 7 and float(pitch.min()) > -0.01  # nods down and back
    assert 3 < float(yaw.abs().max()) < 5 and float(roll.abs().max()) < 1e-3
    assert abs(float(pitch[0])) < 1e-3 and abs(float(pitch[-1])) < 0.5  # starts and ends at rest
    # up to float rounding: the trig and rotation kernels differ by an ulp between CPUs
    torch.testing.assert_close(make_samples.nod_motion().frames, motion.frames, rtol=1e-6, atol=1e-5)


def test_the_nod_moves_any_portraits_head_by_relative_driving():
    """Driving a portrait turned 10° whose pose bins spread like the anchor's: its head nods and turns by about
    the motion's angles (relative driving works on pose-bin logits, so a wider spread moves more, a narrower one
    less), and stays exactly where it is whenever the motion is at rest."""
    from ditto_core.keypoints import bins_to_degrees
    from ditto_core.motion import DriveOptions, Motion
    from ditto_core.motion.drive import driving_keypoints

    motion = Motion.load(ASSETS / "nod.safetensors")
    bins = torch.arange(66, dtype=torch.float32)

    def pose(degrees):
        centre = 32.5 + degrees / 3
        return torch.log_softmax(-0.5 * ((bins - centre) / make_samples.POSE_SPREAD_BINS) ** 2, 0)[None]

    source = {"pitch": pose(-5.0), "yaw": pose(10.0), "roll": pose(2.0), "t": torch.zeros(1, 3),
              "exp": torch.zeros(1, 63), "scale": torch.ones(1, 1) * 1.7, "kp": torch.randn(1, 63) * 0.1}
    frames = range(len(motion))
    fields, _ = driving_keypoints(source, (10.0, -5.0), motion, frames, [0] * len(motion), False, DriveOptions())
    for name, start in (("pitch", -5.0), ("yaw", 10.0), ("roll", 2.0)):
        driven, wanted = bins_to_degrees(fields[name]) - start, motion.degrees(name)
        torch.testing.assert_close(driven, wanted, atol=1.2, rtol=0)
        at_rest = wanted.abs() < 1e-3
        assert bool(at_rest.any()) and float(driven[at_rest].abs().max()) < 2e-3
    assert float(bins_to_degrees(fields["pitch"]).max()) + 5 > 4  # a visible nod
