"""Bad and odd inputs, one table: each row is an input a user may give and the answer it must get, either a
correct result (checked) or one clear error naming the problem. The README's troubleshooting section lists them."""

from __future__ import annotations

import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from comfy_stubs import InterruptProcessingException, constants, install, load_pack, register, run_node

from ditto_core.audio import AudioInputError, OnnxHubertEncoder, extract_features, load_audio
from ditto_core.batch import ManifestError, read_manifest
from ditto_core.config_pickle import ConfigFileError
from ditto_core.download import DownloadError, download_release
from ditto_core.lists import pair_up
from ditto_core.models import CheckpointError, load_network
from ditto_core.motion import Motion, MotionFileError
from ditto_core.motion.sampler import ChainConfig
from ditto_core.networks import load_networks
from ditto_core.portrait import FaceModelError, NoFaceError, RegistrationOptions, load_face_models, register_portrait
from ditto_core.portrait.face_models import FaceDetector, load_face_mesh
from ditto_core.portrait.paste import FacePlacement, PasteBackError, paste_faces
from ditto_core.release import AUX_FILES, CONFIG_FILES, NETWORK_FILES, RELEASE_FILES
from ditto_core.release_config import load_configs
from ditto_core.stream import check_fps, default_fps
from ditto_core.testing.fake_aux import write_fake_face_detector
from ditto_core.testing.fake_hub import FakeHub
from ditto_core.testing.fake_release import copy_release


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable  # (env) → result
    check: Callable | None = None  # result → bool, for inputs that must work
    error: type | None = None  # for inputs that must be refused …
    message: str = ""  # … with this (regex) in the message


class Env:
    """What the rows need, built once: a small fake release, its models, a scratch folder, a ComfyUI stand-in."""

    def __init__(self, release: Path, scratch: Path):
        self.release, self.scratch = release, scratch
        self.networks = load_networks(release)
        self.face_models = load_face_models(release)
        self.encoder = OnnxHubertEncoder(release / AUX_FILES["hubert"].path)

    def register(self, image, face_models=None):
        return register_portrait(image, self.networks.appearance_extractor, self.networks.motion_extractor,
                                 face_models or self.face_models)

    def features(self, samples, rate=16000):
        return extract_features(load_audio(samples, rate), self.encoder)

    def file(self, name: str, data: bytes | None = None) -> Path:
        path = self.scratch / name
        if data is not None:
            path.write_bytes(data)
        return path

    def state_dict(self, kind: str) -> dict:
        content = torch.load(self.release / NETWORK_FILES[kind].path, weights_only=True)
        return content["model_state_dict"] if kind == "lmdm" else content

    def saved(self, name: str, content) -> Path:
        path = self.file(name)
        torch.save(content, path)
        return path

    def comfy(self):
        base = self.scratch / "comfy"
        state = install(base)
        target = base / "models" / "ditto"
        if not (target / "ditto_pytorch").exists():
            copy_release(self.release, target)
        pack = load_pack()
        return pack, state, base


def _photo(h, w, seed=0):
    return np.random.default_rng(seed).integers(60, 200, (h, w, 3), dtype=np.uint8)


def _renamed(env):
    sd = env.state_dict("warp_network")
    sd["third.conv.weight_x"] = sd.pop("third.conv.weight")
    return load_network("warp_network", env.saved("renamed.pth", sd))


def _wrong_shape(env):
    sd = env.state_dict("appearance_extractor")
    sd["second.bias"] = torch.zeros(7)
    return load_network("appearance_extractor", env.saved("shape.pth", sd))


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickle_bomb(env):
    marker = env.file("executed")
    try:
        load_network("decoder", env.saved("bomb.pth", {"payload": _Payload(marker)}))
    finally:
        assert not marker.exists(), "the pickle's code ran"


def _several_faces(env):
    detector = FaceDetector(write_fake_face_detector(env.file("det3.onnx"), faces=((120, 150, 90), (330, 260, 220), (420, 420, 50))))
    models = type(env.face_models)(detector, env.face_models.landmark106, env.face_models.landmark203, env.face_models.face_mesh)
    portrait = env.register(_photo(512, 512), models)
    centre = portrait.crop_to_image[0] @ np.array([256.0, 256.0, 1.0])
    return centre[:2]


def _download(env, fault: str | None = None, status: int | None = None):
    """Download the fake release from a local stand-in hub with ``fault`` on the LMDM file; nothing half-written may
    be left, whatever happens."""
    target = Path(tempfile.mkdtemp(dir=env.scratch))
    lmdm = NETWORK_FILES["lmdm"].path
    with FakeHub(env.release) as hub:
        if fault:
            getattr(hub, fault).add(lmdm)
        hub.status = status
        try:
            report = download_release(target, endpoint=hub.endpoint)
        except DownloadError as exc:
            report, error = None, exc
        else:
            error = None
    names = {p.name for p in target.rglob("*") if p.is_file()}
    assert not [n for n in names if n.startswith(".")], "a temporary file was left"
    assert fault is None or "lmdm_v0.4_hubert.pth" not in names, "an unverified file was kept"
    if error is not None:
        raise error
    return report


def _interrupted_render(env):
    pack, state, base = env.comfy()
    nodes = register(pack)
    (models,) = nodes["DittoLoadModels"].execute("ditto_pytorch", "cpu")
    (portrait,) = nodes["DittoRegisterPortrait"].execute(models, torch.rand(1, 64, 64, 3) * 0.5 + 0.3, "first image",
                                                             0, "custom", 2.3, -0.125, 1920, 0.5)
    state.interrupt_checks, state.interrupt_after = 0, 1
    try:
        nodes["DittoRenderVideo"].execute(models, portrait, Motion(torch.zeros(9, 265)), True, "on", 2, "auto",
                                           "ditto/cut", 18, None)
    finally:
        state.interrupt_after = None
        assert not [p for p in (base / "output").rglob("*") if p.is_file()], "a partial file was left"


def _portrait_batch_node(env):
    pack, _, _ = env.comfy()
    nodes = register(pack)
    (models,) = nodes["DittoLoadModels"].execute("ditto_pytorch", "cpu")
    batch = torch.rand(3, 64, 64, 3) * 0.5 + 0.3
    return nodes["DittoRegisterPortrait"].execute(models, batch, "first image", 0, "custom", 2.3, -0.125, 1920, 0.5)[0]


def _linked_fps_out_of_range(env):
    """Render with a rate wired in from another node (ComfyUI validates a linked input only when it runs)."""
    pack, _, _ = env.comfy()
    nodes = register(pack)
    (models,) = nodes["DittoLoadModels"].execute("ditto_pytorch", "cpu")
    portrait = env.register(_photo(64, 64))
    return nodes["DittoRender"].execute(models, portrait, Motion(torch.zeros(5, 265)), True, "on", 2, "auto",
                                         fps=120.0)


def _video_with_a_cut(env):
    frames = np.stack([_photo(64, 64, seed) for seed in range(5)])
    frames[2] = 0  # a black frame: no face
    return env.register(frames)


def _fast_source_video(env):
    frames = np.stack([_photo(64, 64, seed) for seed in range(3)])
    portrait = register_portrait(frames, env.networks.appearance_extractor, env.networks.motion_extractor,
                                 env.face_models, fps=120.0)
    return default_fps(portrait.fps, 25.0)


def _other_fps_motion(env):
    pack, _, base = env.comfy()
    Motion(torch.randn(30, 265) * 0.1, fps=30.0).save(base / "input" / "m30.safetensors")
    return register(pack)["DittoLoadMotion"].execute("m30.safetensors").result[0]


def _widget_ranges(env):
    pack, _, _ = env.comfy()
    spec = register(pack)["DittoSampleMotion"].INPUT_TYPES()["required"]
    return spec["overlap"][1]["max"], spec["steps"][1]["min"]


def _paste(env, crops=4, crop_side=512, masks=None, frames=None, feather=0.05, mask_value=1.0, mask_tensor=False):
    """Paste ``crops`` grey crops into a 4-frame placement on a 64x64 portrait (``masks``: ``(count, side)``, an
    array, or a tensor as ComfyUI's MASK; ``frames``: ``(count, height, width)``)."""
    placement = FacePlacement.of(env.register(_photo(64, 64)), 0, 4)
    faces = np.full((crops, crop_side, crop_side, 3), 0.5, np.float32)
    face_masks = None if masks is None else np.full((masks[0], masks[1], masks[1]), mask_value, np.float32)
    if mask_tensor:
        face_masks = torch.from_numpy(face_masks)
    targets = None if frames is None else np.zeros((frames[0], frames[1], frames[2], 3), np.uint8)
    return list(paste_faces(faces, placement, targets, feather, face_masks))


def _hand_made_motion(env, anchor: float | None = None, exp_offsets: tuple | None = None,
                      first_value_f64: float | None = None, **header):
    """A copy of assets/nod.safetensors with one value changed, as a user would make by hand (``exp_offsets``:
    ``(columns, value)`` of face edits added, as a format-2 file holds them; ``first_value_f64``: the frames
    stored as float64 with this first value)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(Path(__file__).resolve().parents[1] / "assets" / "nod.safetensors"), "pt") as handle:
        metadata, tensors = handle.metadata(), {key: handle.get_tensor(key) for key in handle.keys()}
    if anchor is not None:
        tensors["anchor"] = torch.full((265,), anchor)
    if first_value_f64 is not None:
        tensors["frames"] = tensors["frames"].double()
        tensors["frames"][0, 0] = first_value_f64
    if exp_offsets is not None:
        columns, value = exp_offsets
        tensors["exp_offsets"] = torch.full((tensors["frames"].shape[0], columns), value)
        header = {"version": "2", **header}
    path = env.file("hand_made.safetensors")
    save_file(tensors, str(path), metadata={**metadata, **header})
    return Motion.load(path)


def _prompt(env, node: str, **widgets):
    """A node run with widget values as a script may send them to /prompt (its other inputs: a short motion and
    silence), as ComfyUI runs it."""
    pack, _, _ = env.comfy()
    inputs = {"motion": Motion(torch.zeros(5, 265)),
              "audio": {"waveform": torch.zeros(1, 1, 1600), "sample_rate": 16000}}
    cls = register(pack)[node]
    wanted = cls.INPUT_TYPES()["required"]
    return run_node(cls, constants(**{k: v for k, v in inputs.items() if k in wanted}, **widgets))


def _load_motion_check(env, motion_file: str):
    pack, _, _ = env.comfy()
    return register(pack)["DittoLoadMotion"].validate_inputs(motion_file)


def _batch(env, portraits: int = 2, clips: int = 2, portrait_names=None):
    """Talking Head Batch handed lists of these lengths, as ComfyUI hands a list node its inputs."""
    pack, _, _ = env.comfy()
    nodes = register(pack)
    (models,) = nodes["DittoLoadModels"].execute("ditto_pytorch", "cpu")
    portrait = env.register(_photo(64, 64))
    speech = {"waveform": torch.zeros(1, 1, 1600), "sample_rate": 16000}
    widgets = dict(pairing="pairs", emotion="as released", seed=0, steps=1, overlap=-1, smoothing=-1, paste_back=True,
                   stitching="as released", batch_size=4, precision="auto", filename_prefix="ditto/batch", crf=23)
    names = {} if portrait_names is None else {"portrait_names": portrait_names}
    return nodes["DittoTalkingHeadBatch"].execute(models=[models], portraits=[portrait] * portraits,
                                                    clips=[speech] * clips, **names,
                                                    **{name: [value] for name, value in widgets.items()})


def _empty_portrait_folder(env):
    pack, _, base = env.comfy()
    (base / "input" / "no_faces").mkdir(exist_ok=True)
    (base / "input" / "no_faces" / "notes.txt").write_text("no images here")
    return register(pack)["DittoLoadPortraits"].execute("no_faces")


class _RunsCommand:
    def __reduce__(self):
        return os.system, ("echo ran > /dev/null",)


def _config(env, data: bytes | None):
    """Load the release's configuration from a copy of the small release whose offline cfg is ``data``
    (None: missing)."""
    root = copy_release(env.release, Path(tempfile.mkdtemp(dir=env.scratch)))
    path = root / CONFIG_FILES["config"].path
    path.unlink()
    if data is not None:
        path.write_bytes(data)
    config, _ = load_configs(root)
    config.check_model(env.networks.lmdm.config)
    return config


CASES = [
    # portraits
    Case("no face (all-black image)", lambda e: e.register(np.zeros((300, 400, 3), np.uint8)),
         error=NoFaceError, message=r"no face found in the 400x300 source image \(detector threshold 0.5\)"),
    Case("several faces: the largest is used", _several_faces,
         check=lambda c: np.linalg.norm(c - (330, 260)) < np.linalg.norm(c - (120, 150))),
    Case("tiny image (32x32)", lambda e: e.register(_photo(32, 32)), check=lambda p: p.images.shape[1:3] == (32, 32)),
    Case("huge image (8000x6000)", lambda e: e.register(_photo(6000, 8000)),
         check=lambda p: p.images.shape[1:3] == (1440, 1920)),
    Case("greyscale image", lambda e: e.register(np.full((64, 64), 150, np.uint8)), check=lambda p: p.images.shape[-1] == 3),
    Case("RGBA image", lambda e: e.register(np.full((64, 64, 4), 150, np.uint8)), check=lambda p: p.images.shape[-1] == 3),
    Case("16-bit image", lambda e: e.register(np.full((64, 64, 3), 40000, np.uint16)),
         check=lambda p: p.images.dtype == np.uint8 and p.images.max() == 156),
    Case("a batch of portraits in first-image mode (node)", _portrait_batch_node, check=lambda p: p.num_frames == 1),
    # audio
    Case("empty audio", lambda e: e.features(np.zeros(0, np.float32)), error=AudioInputError, message="is empty"),
    Case("10 ms of audio", lambda e: e.features(np.zeros(160, np.float32)), check=lambda f: f.num_frames == 1),
    Case("silent audio", lambda e: e.features(np.zeros(16000, np.float32)),
         check=lambda f: f.num_frames == 25 and bool(torch.isfinite(f.frames).all())),
    Case("clipped audio (peaks at ±3)", lambda e: e.features(np.clip(np.random.randn(16000) * 5, -3, 3).astype(np.float32)),
         check=lambda f: f.num_frames == 25 and bool(torch.isfinite(f.frames).all())),
    Case("NaN in the audio", lambda e: e.features(np.array([0.1, np.nan] * 100, np.float32)),
         error=AudioInputError, message="100 non-finite samples"),
    Case("mono audio", lambda e: e.features(np.zeros((1, 8000), np.float32)), check=lambda f: f.num_frames == 13),
    Case("stereo audio", lambda e: e.features(np.zeros((2, 8000), np.float32)), check=lambda f: f.num_frames == 13),
    Case("6-channel audio", lambda e: e.features(np.zeros((6, 8000), np.float32)), check=lambda f: f.num_frames == 13),
    Case("8 kHz audio", lambda e: e.features(np.zeros(8000, np.float32), 8000), check=lambda f: f.num_frames == 25),
    Case("96 kHz audio", lambda e: e.features(np.zeros(96000, np.float32), 96000), check=lambda f: f.num_frames == 25),
    Case("30-minute audio", lambda e: e.features(np.zeros(16000 * 1800, np.float32)),
         check=lambda f: f.num_frames == 45000),
    # model files
    Case("missing checkpoint", lambda e: load_network("lmdm", e.file("absent.pth")),
         error=CheckpointError, message="not found.*lmdm_v0.4_hubert.pth.*digital-avatar/ditto-talkinghead"),
    Case("truncated checkpoint", lambda e: load_network("decoder", e.file(
        "cut.pth", (e.release / NETWORK_FILES["decoder"].path).read_bytes()[:5000])),
         error=CheckpointError, message="damaged or incomplete"),
    Case("renamed key", _renamed, error=CheckpointError, message=r"missing keys: third\.conv\.weight.*unexpected keys"),
    Case("wrong shape", _wrong_shape, error=CheckpointError, message=r"second\.bias: file \(7,\), network \(64,\)"),
    Case("fp16 checkpoint", lambda e: load_network("stitch_network", e.saved("half.pth", {
        "retarget_shoulder": {k: v.half() for k, v in torch.load(
            e.release / NETWORK_FILES["stitch_network"].path, weights_only=True)["retarget_shoulder"].items()}})),
         check=lambda net: all(p.dtype == torch.float32 for p in net.parameters())),
    Case("pickle that would run code", _pickle_bomb, error=CheckpointError, message="refused without being run"),
    # auxiliary models
    Case("missing aux ONNX", lambda e: FaceDetector(e.file("absent_det.onnx")),
         error=FaceModelError, message="face detector model not found.*ditto_pytorch/aux_models"),
    Case("wrong aux ONNX (HuBERT given as the detector)",
         lambda e: FaceDetector(e.release / AUX_FILES["hubert"].path), error=FaceModelError, message="has 1 outputs"),
    Case("damaged .task file", lambda e: load_face_mesh(e.file("bad.task", b"not a bundle")),
         error=FaceModelError, message="cannot load the MediaPipe face landmarker"),
    # downloads (opt-in, from a local stand-in for the Hugging Face hub)
    Case("download of the release", _download, check=lambda report: len(report.downloaded) == len(RELEASE_FILES)),
    Case("download with a tampered file", lambda e: _download(e, "tampered"), error=DownloadError,
         message="lmdm_v0.4_hubert.pth: received .* the file was discarded"),
    Case("download cut off mid-file", lambda e: _download(e, "cut"), error=DownloadError, message="broke off"),
    Case("download refused by the hub (no access)", lambda e: _download(e, status=401), error=DownloadError,
         message="cannot read digital-avatar/ditto-talkinghead"),
    # the release's configuration (ditto_cfg)
    Case("missing ditto_cfg", lambda e: _config(e, None), error=ConfigFileError,
         message=r"(?s)v0.4_hubert_cfg_pytorch.pkl is missing.*hf download.*--code-defaults"),
    Case("cfg pickle that would run a command", lambda e: _config(e, pickle.dumps({"default_kwargs": _RunsCommand()})),
         error=ConfigFileError, message=r"asks to run posix.system while loading.*refused without running anything"),
    Case("damaged cfg", lambda e: _config(e, b"\x80\x04\x95garbage"), error=ConfigFileError,
         message="damaged or incomplete"),
    Case("cfg whose memo index asks for gigabytes", lambda e: _config(e, b"\x80\x04K\x01r\xff\xff\xff\x7f."),
         error=ConfigFileError, message="damaged or incomplete: memo index 2147483647 at operation 2"),
    Case("cfg from another release (conditions of another width)",
         lambda e: _config(e, pickle.dumps({"default_kwargs": {}, "audio2motion_cfg": {"audio_feat_dim": 1059}})),
         error=ConfigFileError, message="audio_feat_dim gives 1059, but the motion model"),
    # running
    Case("interrupted render", _interrupted_render, error=InterruptProcessingException),
    Case("out-of-range sampler values", lambda e: ChainConfig(overlap=80).validate(80),
         error=ValueError, message="overlap must be between"),
    Case("out-of-range widget values are bounded in the node", _widget_ranges, check=lambda r: r == (79, 0)),
    Case("output frame rate outside 10-60", lambda e: check_fps(75.0), error=ValueError,
         message="between 10 and 60 fps, got 75"),
    Case("output frame rate outside 10-60 wired into Render", _linked_fps_out_of_range, error=ValueError,
         message=r"DittoRender: input 'fps' is 120.0; it must be from 0.0 to 60.0"),
    Case("video source with frames without a face", _video_with_a_cut,
         check=lambda p: p.has_face.tolist() == [True, True, False, True, True]),
    Case("video source with no face at all", lambda e: e.register(np.zeros((4, 64, 64, 3), np.uint8)),
         error=NoFaceError, message="no face found in any of the 4 frames of the source video"),
    Case("video source at 120 fps, no output rate chosen", _fast_source_video, error=ValueError,
         message="runs at 120 fps, outside the 10-60 fps this renders; choose the output rate"),
    Case("unknown loop policy", lambda e: RegistrationOptions(loop="bounce"), error=ValueError,
         message="unknown loop policy 'bounce'; choose one of ping-pong, once, shortest"),
    Case("motion file saved at another fps", _other_fps_motion, check=lambda m: m.fps == 25.0 and len(m) == 25),
    # Paste Back (face crops from Render, through other nodes, back into the frames)
    Case("Paste Back: fewer face crops than the placement's frames", lambda e: _paste(e, crops=3),
         error=PasteBackError, message="3 face crops for a placement of 4 frames: every node between Render"),
    Case("Paste Back: face mask of another size than the crops", lambda e: _paste(e, crop_side=1024, masks=(1, 512)),
         error=PasteBackError, message="the face mask is 512x512 but the face crops are 1024x1024"),
    Case("Paste Back: 2 face masks for 4 crops", lambda e: _paste(e, masks=(2, 512)), error=PasteBackError,
         message="2 face masks for 4 face crops: give one mask"),
    Case("Paste Back: frames of another size than the portrait", lambda e: _paste(e, frames=(1, 48, 64)),
         error=PasteBackError, message="the frames are 64x48 but the faces were placed in 64x64 frames"),
    Case("Paste Back: 3 frames for 4 crops", lambda e: _paste(e, frames=(3, 64, 64)), error=PasteBackError,
         message="3 frames for 4 face crops: give one frame"),
    Case("Paste Back: feather out of range", lambda e: _paste(e, feather=0.8), error=PasteBackError,
         message="feather must be between 0 .* and 0.5"),
    Case("Paste Back: face mask with NaN", lambda e: _paste(e, masks=(1, 512), mask_value=float("nan")),
         error=PasteBackError, message=r"the face mask holds 262144 NaN or infinite value\(s\)"),
    Case("Paste Back: face mask with NaN, as ComfyUI's MASK (a tensor)",
         lambda e: _paste(e, masks=(1, 512), mask_value=float("nan"), mask_tensor=True),
         error=PasteBackError, message=r"the face mask holds 262144 NaN or infinite value\(s\)"),
    Case("Paste Back: one mask and one frame for every crop", lambda e: _paste(e, masks=(1, 512), frames=(1, 64, 64)),
         check=lambda out: len(out) == 4 and all(frame.shape == (64, 64, 3) for frame, _ in out)),
    Case("corrupt motion file", lambda e: Motion.load(e.file("bad.safetensors", b"\x10\x00garbage")),
         error=MotionFileError, message="not a readable motion file"),
    Case("motion file with fps 0, -5, nan, inf or 1e308", lambda e: _hand_made_motion(e, fps="1e308"),
         error=MotionFileError, message=r"hand_made.safetensors: fps is 1e\+308; a motion's frame rate must be a "
                                        r"number from 1 to 1000"),
    Case("motion file whose anchor is NaN", lambda e: _hand_made_motion(e, anchor=float("nan")),
         error=MotionFileError, message=r"hand_made.safetensors: 265 NaN or infinite value\(s\) in the anchor"),
    Case("motion file in float64 with a value beyond float32 (1e300)",
         lambda e: _hand_made_motion(e, first_value_f64=1e300), error=MotionFileError,
         message=r"hand_made.safetensors: 1 NaN or infinite value\(s\) in the frames"),
    Case("motion file whose face edits have the wrong shape", lambda e: _hand_made_motion(e, exp_offsets=(62, 0.0)),
         error=MotionFileError, message=r"hand_made.safetensors: exp_offsets have shape \[\d+, 62\]"),
    Case("motion file whose face edits hold NaN", lambda e: _hand_made_motion(e, exp_offsets=(63, float("nan"))),
         error=MotionFileError, message=r"hand_made.safetensors: .*NaN"),
    Case("motion file from a newer version of the pack", lambda e: _hand_made_motion(e, version="99"),
         error=MotionFileError, message=r"hand_made.safetensors was made by a newer version of the pack \(motion "
                                        r"format version 99; this one reads versions up to 2\): update ComfyUI-Ditto"),
    # many portraits and clips (Talking Head Batch and its folder loaders)
    Case("a folder with no images (Load Portraits)", _empty_portrait_folder, error=ValueError,
         message=r"no_faces holds no images \(.bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp\); put them there"),
    Case("a batch with no portraits", lambda e: _batch(e, portraits=0), error=ValueError,
         message="the batch got no portraits; wire Register Portrait"),
    Case("a batch with no speech clips", lambda e: _batch(e, clips=0), error=ValueError,
         message="the batch got no speech clips; wire Load Speech Clips"),
    Case("'pairs' with 3 portraits and 2 clips", lambda e: _batch(e, portraits=3, clips=2), error=ValueError,
         message=r"there are 3 portraits and 2 clips; .* or choose 'every portrait × every clip'"),
    Case("'pairs' with one portrait and 3 clips", lambda e: pair_up(1, 3, "pairs"),
         check=lambda pairs: pairs == [(0, 0), (0, 1), (0, 2)]),
    Case("manifest that is not UTF-8 text", lambda e: read_manifest(e.file("jobs.csv", b"portrait,audio\na.jpg,\xe9t\xe9.wav\n")),
         error=ManifestError, message=r"jobs.csv line 2: byte 0xe9 is not UTF-8 text; save the manifest as UTF-8"),
    # values sent to ComfyUI's /prompt API without the front end (or wired in from another node): NodeInputError, a
    # ValueError (the pack loads under another module name here, so its own class is not this process's)
    Case("a number as text sent to a node", lambda e: _prompt(e, "DittoSmoothMotion", window="5", what="pose"),
         error=ValueError, message="DittoSmoothMotion: input 'window' is '5'; it must be a whole number"),
    Case("NaN sent to a node (passes ComfyUI's range check)",
         lambda e: _prompt(e, "DittoRelaxOnSilence", strength=float("nan"), silence_db=-45.0, speech_db=-25.0),
         error=ValueError, message="DittoRelaxOnSilence: input 'strength' is nan; it must be a finite number"),
    Case("out-of-range number ComfyUI leaves to the node (an input of VALIDATE_INPUTS)",
         lambda e: _prompt(e, "DittoRelaxOnSilence", strength=1.0, silence_db=-1000.0, speech_db=-25.0),
         error=ValueError, message=r"input 'silence_db' is -1000.0; it must be from -90.0 to 0.0"),
    Case("an unknown choice sent to a node", lambda e: _prompt(e, "DittoSmoothMotion", window=5, what="all"),
         error=ValueError, message="input 'what' is 'all'; choose one of pose, "),
    Case("a motion file outside input/ named through the API", lambda e: _load_motion_check(e, "../../etc/passwd"),
         check=lambda answer: "is outside ComfyUI's input folder; put the file in the input folder" in answer),
    Case("portrait names of another length than the portraits", lambda e: _batch(e, portrait_names=["a.png"]),
         error=ValueError, message="portrait_names has 1 names for 2 portraits; wire the names output"),
]


@pytest.fixture(scope="module")
def env(small_release, tmp_path_factory):
    return Env(small_release, tmp_path_factory.mktemp("hardening"))


def test_the_table_has_at_least_25_rows():
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_and_odd_inputs(env, case):
    if case.error is not None:
        with pytest.raises(case.error, match=case.message or None):
            case.run(env)
    else:
        assert case.check(case.run(env)), case.name
