"""The release's configuration (ditto_cfg): read as data only, and every key applied as the reference applies it."""

import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ditto_core.config_pickle import ConfigFileError, load_data_pickle
from ditto_core.keypoints import bins_to_degrees, transform_keypoints
from ditto_core.motion import Motion, controls
from ditto_core.motion.blinks import EYE_EXP_COLUMNS, add_blinks, blink_schedule, plan_blinks
from ditto_core.motion.drive import EYE_KEYPOINTS, LIP_KEYPOINTS, driving_keypoints, keypoint_mask
from ditto_core.motion.motion import FIELDS
from ditto_core.motion.sampler import ChainConfig, MotionChain
from ditto_core.pipeline import ConditionSource, MotionPlan, motion_conditions
from ditto_core.portrait.registration import SourceTimeline
from ditto_core.release import CONFIG_FILES, check_release
from ditto_core.release_config import (
    CODE_DEFAULTS,
    ReleaseConfig,
    config_from_data,
    load_configs,
    load_release_config,
)
from ditto_core.testing.fake_config import fake_blink_template, fake_keypoint_info

ROOT = Path(__file__).resolve().parents[1]


def cfg(**kwargs) -> ReleaseConfig:
    """A configuration whose default_kwargs are ``kwargs`` (the rest: the reference code's fallbacks)."""
    return config_from_data({"default_kwargs": kwargs, "audio2motion_cfg": {}}, "test cfg", "0" * 64)


def source_keypoints(frames=1, seed=0, scale=1.5) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    infos = [fake_keypoint_info(rng, scale + 0.01 * i) for i in range(frames)]
    return {k: torch.from_numpy(np.concatenate([info[k] for info in infos])) for k in infos[0]}


class FakePortrait:
    """What conditions and driving read of a registered portrait."""

    def __init__(self, frames=1, seed=0):
        rng = np.random.default_rng(seed + 100)
        self.keypoints = source_keypoints(frames, seed)
        self.eye_open = rng.uniform(0.2, 0.4, (frames, 2)).astype(np.float32)
        self.eye_ball = rng.normal(0, 0.05, (frames, 6)).astype(np.float32)
        self.canonical_kp = self.keypoints["kp"][0].numpy().copy()
        self.num_frames = frames
        self.is_video = frames > 1
        self.timeline = SourceTimeline(frames)


# --- reading safely ----------------------------------------------------------------------------------------

BENIGN = {
    "default_kwargs": {"emo": np.eye(8, dtype=np.float32)[[4, 3]], "overlap_v2": np.int64(70),
                       "crop_scale": np.float32(2.3), "flag_stitching": np.bool_(True), "fix_kp_cond_dim": [0, 202],
                       "fade_out_keys": ("exp",), "set": {1, 2}, "bytes": b"\x00\x01"},
    "audio2motion_cfg": {"seq_frames": 80},
}


def numpy1_pickle(data, protocol) -> bytes:
    """A pickle as numpy 1.x writes it (its arrays and scalars named under ``numpy.core``)."""
    raw = pickle.dumps(data, protocol=protocol)
    if protocol <= 2:  # module names are text lines there
        return raw.replace(b"numpy._core.", b"numpy.core.")
    for old in (b"numpy._core.multiarray", b"numpy._core.numeric"):
        new = old.replace(b"._core", b".core")
        raw = raw.replace(bytes([0x8C, len(old)]) + old, bytes([0x8C, len(new)]) + new)
    assert raw[2:3] == b"\x95" and len(raw) < 65536  # a small pickle is one frame: give it its new length
    return raw[:3] + struct.pack("<Q", len(raw) - 11) + raw[11:]


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("numpy_names", ["2.x", "1.x"])
def test_benign_config_pickles_load(tmp_path, protocol, numpy_names):
    data = pickle.dumps(BENIGN, protocol=protocol) if numpy_names == "2.x" else numpy1_pickle(BENIGN, protocol)
    if numpy_names == "1.x":
        assert b"numpy.core" in data and b"numpy._core" not in data
    path = tmp_path / "cfg.pkl"
    path.write_bytes(data)
    loaded = load_data_pickle(path)
    kw = loaded["default_kwargs"]
    np.testing.assert_array_equal(kw["emo"], BENIGN["default_kwargs"]["emo"])
    assert kw["emo"].dtype == np.float32 and kw["overlap_v2"] == 70 and kw["crop_scale"] == np.float32(2.3)
    assert kw["set"] == {1, 2} and kw["bytes"] == b"\x00\x01" and kw["fade_out_keys"] == ("exp",)


class Payload:
    def __init__(self, call, args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def payloads(marker: Path):
    command = f"touch {marker}"
    return {
        "os.system": Payload(os.system, (command,)),
        "eval": Payload(eval, (f"open({str(marker)!r}, 'w')",)),
        "builtins.getattr": Payload(getattr, (Payload(__import__, ("os",)), "system")),
        "nested __reduce__": {"ch_info": {"x_s_info_lst": [{"kp": [1.0, Payload(os.system, (command,))]}]}},
    }


@pytest.mark.parametrize("name", ["os.system", "eval", "builtins.getattr", "nested __reduce__"])
def test_payloads_are_refused_without_running(tmp_path, name):
    marker = tmp_path / "ran"
    path = tmp_path / "v0.4_hubert_cfg_pytorch.pkl"
    path.write_bytes(pickle.dumps({"default_kwargs": {"x": payloads(marker)[name]}}, protocol=2))
    with pytest.raises(ConfigFileError) as err:
        load_release_config(path)
    message = str(err.value)
    assert str(path) in message and "refused without running anything" in message
    assert ("posix.system" in message or "os.system" in message or "builtins.eval" in message
            or "builtins.getattr" in message)
    assert not marker.exists()


class WithState(Payload):
    def __init__(self, call, args, state):
        super().__init__(call, args)
        self.state = state

    def __reduce__(self):
        return self.call, self.args, self.state


RECONSTRUCT = np.zeros(1).__reduce__()[0]
SCALAR = np.float32(0).__reduce__()[0]


@pytest.mark.parametrize("allocation, message", [
    (Payload(bytearray, (1_500_000_000,)), "bytearray of int: only of bytes or text"),
    (Payload(bytearray, (np.int64(300_000_000),)), "bytearray of int64"),
    (Payload(np.ndarray, ((40_000, 40_000),)), "asked for 12800000000 bytes, more than the file could hold"),
    (Payload(SCALAR, (np.dtype("V1000000000"),)), "a numpy scalar asked for 1000000000 bytes"),
    (Payload(RECONSTRUCT, (np.ndarray, (100,), np.dtype("V10000000"))), "asked for 1000000000 bytes"),
    (WithState(RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (10,), np.dtype("O"), False, [1, 2])),
     r"an object array of shape \(10,\) comes with 2 items"),
])
def test_a_few_bytes_cannot_ask_for_gigabytes_or_crash_numpy(tmp_path, allocation, message):
    """bytearray, ndarray, scalars and numpy's _reconstruct are allowed (arrays are pickled through them), but never
    for more bytes than the file holds, nor with a state that does not fit the shape (found by the independent
    check and the review: 1.5 GB from 76 bytes, 1.9 GB from 110, a crash of numpy from 150)."""
    import resource

    path = tmp_path / "v0.4_hubert_cfg_pytorch.pkl"
    path.write_bytes(pickle.dumps({"default_kwargs": {"x": allocation}}, protocol=2))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigFileError, match=message):
        load_data_pickle(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: nothing of that size


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_arrays_scalars_and_bytes_still_load_as_plain_numpy(tmp_path, protocol):
    data = {"f": np.arange(12, dtype=np.float32).reshape(3, 4), "t": np.asfortranarray(np.ones((2, 3))),
            "s": np.array(["a", "bc"]), "o": np.array([1, "x", None], dtype=object), "n": np.float64(2.5),
            "b": bytearray(b"\x00\xff"), "nested": [{"e": np.zeros((0, 63), np.float32)}]}
    path = tmp_path / "cfg.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    if protocol < 3:  # protocols 0-2 write an empty array's bytes through builtins.bytes, which is not allowed
        del data["nested"]
        path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = load_data_pickle(path)
    for key, value in data.items():
        if key == "nested":
            continue
        if isinstance(value, np.ndarray):
            assert type(loaded[key]) is np.ndarray and np.array_equal(loaded[key], value) and \
                loaded[key].dtype == value.dtype, key
        else:
            assert loaded[key] == value, key
    if protocol >= 3:
        assert type(loaded["nested"][0]["e"]) is np.ndarray and loaded["nested"][0]["e"].shape == (0, 63)


def test_a_damaged_config_is_one_clear_error(tmp_path):
    path = tmp_path / "cfg.pkl"
    path.write_bytes(pickle.dumps(BENIGN)[:40])
    with pytest.raises(ConfigFileError, match="damaged or incomplete"):
        load_data_pickle(path)
    path.write_bytes(pickle.dumps({"default_kwargs": {"overlap_v2": "seventy"}}))
    with pytest.raises(ConfigFileError, match=r"default_kwargs\['overlap_v2'\] is 'seventy'; expected an integer"):
        load_release_config(path)


@pytest.mark.parametrize("key, value", [("sampling_timesteps", 10**9), ("sampling_timesteps", 0), ("overlap_v2", -3),
                                        ("overlap_v2", 80), ("smo_k_d", -1), ("N_d", 10**12), ("fix_kp_cond", -2)])
def test_sizes_out_of_range_are_refused_at_load_naming_the_key(tmp_path, key, value):
    """Values that would make sampling hang, allocate terabytes or fail deep inside (found by the independent
    check) are one error when the file is read."""
    path = tmp_path / "v0.4_hubert_cfg_pytorch.pkl"
    path.write_bytes(pickle.dumps({"default_kwargs": {key: value}, "audio2motion_cfg": {}}))
    with pytest.raises(ConfigFileError, match=rf"{path.name}: default_kwargs\['{key}'\] is {value}; expected an "
                                              rf"integer from -?\d+ to \d+"):
        load_release_config(path)


def test_the_fake_release_writes_both_configs_with_the_documented_structure(small_release):
    assert {"config", "online_config"} <= set(check_release(small_release).present)
    for name in CONFIG_FILES:
        data = load_data_pickle(small_release / CONFIG_FILES[name].path)
        kw = data["default_kwargs"]
        assert set(kw) == set(CODE_DEFAULTS)
        assert kw["emo"].shape == (600, 8) and np.allclose(kw["emo"].sum(1), 1) and (kw["emo"] >= 0).all()
        assert kw["delta_eye_arr"].shape == (15, 63) and not kw["delta_eye_arr"][0].any()
        assert kw["v_min_max_for_clip"].shape == (4, 265) and (kw["v_min_max_for_clip"][0] < kw["v_min_max_for_clip"][1]).all()
        assert set(kw["ch_info"]) == {"x_s_info_lst", "sc", "eye_open_lst", "eye_ball_lst"}
        assert data["audio2motion_cfg"]["audio_feat_dim"] == 1103 and kw["online_mode"] == (name == "online_config")
    online, offline = (load_release_config(small_release / CONFIG_FILES[n].path) for n in ("online_config", "config"))
    assert online.chain.overlap == 70 and online.chain.short_blend and not offline.chain.short_blend


def test_missing_config_names_the_file_and_the_way_out(tmp_path):
    with pytest.raises(ConfigFileError) as err:
        load_configs(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "ditto_cfg" / "v0.4_hubert_cfg_pytorch.pkl") in message
    assert 'hf download digital-avatar/ditto-talkinghead --include "ditto_cfg/v0.4_hubert_cfg_pytorch.pkl"' in message
    assert "--code-defaults" in message
    config, online = load_configs(tmp_path, code_defaults=True)
    assert config.chain == ChainConfig() and online.chain.overlap == 70


def test_a_config_that_disagrees_with_the_checkpoint_is_refused(small_release):
    from ditto_core.models import load_network
    from ditto_core.release import NETWORK_FILES

    lmdm = load_network("lmdm", small_release / NETWORK_FILES["lmdm"].path)
    config = config_from_data({"default_kwargs": {}, "audio2motion_cfg": {"use_sc": False}}, "narrow.pkl", "x")
    assert config.parts.width == 1040
    with pytest.raises(ConfigFileError, match=r"narrow.pkl: .*gives 1040, but the motion model .* has 1103"):
        config.check_model(lmdm.config)


# --- each key's effect ---------------------------------------------------------------------------------------

def test_emotion_sequence_and_ch_info_condition_the_model():
    portrait = FakePortrait()
    emo = np.random.default_rng(1).dirichlet(np.ones(8), 600).astype(np.float32)
    stored = {"x_s_info_lst": [fake_keypoint_info(np.random.default_rng(2), 1.7)],
              "sc": np.arange(63, dtype=np.float32), "eye_open_lst": [np.array([[0.5, 0.6]], np.float32)],
              "eye_ball_lst": [np.full((1, 6), 0.25, np.float32)]}
    config = cfg(emo=emo, ch_info=stored)
    source = ConditionSource.of(portrait, config)
    audio = torch.randn(20, 1024)
    cond = motion_conditions(source, audio, config.emotion, 1103, start=595, parts=config.parts).numpy()
    np.testing.assert_array_equal(cond[:, :1024], audio.numpy())
    np.testing.assert_array_equal(cond[:, 1024:1032], emo[np.arange(595, 615) % 600])  # cycled, used raw
    np.testing.assert_array_equal(cond[:, 1032:1034], np.tile(np.float32([[0.5, 0.6]]), (20, 1)))
    np.testing.assert_array_equal(cond[:, 1034:1040], np.full((20, 6), 0.25))
    np.testing.assert_array_equal(cond[:, 1040:], np.tile(np.arange(63), (20, 1)))
    expected_first = np.concatenate([stored["x_s_info_lst"][0][k].reshape(-1) for k in FIELDS])
    expected_first[0] -= 1  # scale is stored as scale − 1
    np.testing.assert_allclose(source.first_frame.numpy(), expected_first)


def test_condition_parts_follow_the_flags():
    portrait = FakePortrait()
    config = config_from_data({"default_kwargs": {}, "audio2motion_cfg": {"use_emo": False, "use_eye_ball": False}},
                              "x", None)
    cond = motion_conditions(ConditionSource.of(portrait, config), torch.zeros(3, 1024), 4, 1024 + 2 + 63,
                             parts=config.parts)
    np.testing.assert_allclose(cond[:, 1024:1026].numpy(), portrait.eye_open[[0, 0, 0]])
    np.testing.assert_allclose(cond[:, 1026:].numpy(), np.tile(portrait.canonical_kp, (3, 1)))


def test_eye_f0_mode_holds_a_video_source_eyes_at_frame_0():
    portrait = FakePortrait(frames=4)
    looping = ConditionSource.of(portrait, cfg())
    fixed = ConditionSource.of(portrait, cfg(eye_f0_mode=True))
    np.testing.assert_array_equal(looping.eye_rows(0, 8)[0], portrait.eye_open[[0, 1, 2, 3, 3, 2, 1, 0]])
    np.testing.assert_array_equal(fixed.eye_rows(0, 8)[0], portrait.eye_open[[0] * 8])


class RecordingSampler:
    """Stands in for the LMDM: echoes the conditions and records each window's condition frame."""

    shape = (1, 80, 265)

    def __init__(self):
        self.cond_frames = []

    def __call__(self, cond_frame, cond):
        self.cond_frames.append(cond_frame.clone())
        return cond[:, :265].clone()


def test_fix_kp_cond_resets_the_window_condition_to_the_source_keeping_its_dims():
    config = cfg(fix_kp_cond=2, fix_kp_cond_dim=[0, 202], smo_k_d=1).chain
    first = torch.full((265,), -7.0)
    sampler = RecordingSampler()
    cond = torch.arange(300, dtype=torch.float32)[:, None].expand(300, 300).contiguous()
    chain = MotionChain(sampler, first, config)
    chain.push(cond)
    chain.finish()
    frames = sampler.cond_frames
    assert len(frames) == 5 and (frames[0] == -7).all()
    # after w windows (overlap 10) the chain's frame before the next window is row 70·w − 1 (echoed: its index);
    # every 2nd window starts again from the source's frame, keeping dims 0-201 (scale, pose, t) from the chain
    for w, frame in enumerate(frames[1:], start=1):
        previous = float(70 * w - 1)
        if w % 2 == 0:
            assert (frame[:202] == previous).all() and (frame[202:] == -7).all()
        else:
            assert (frame == previous).all()


def test_v_min_max_clips_every_emitted_frame_and_the_anchor():
    bounds = np.stack([np.full(265, -0.5), np.full(265, 0.25), np.zeros(265), np.ones(265)]).astype(np.float32)
    config = cfg(v_min_max_for_clip=bounds, smo_k_d=1).chain
    cond = torch.linspace(-2, 2, 150)[:, None].expand(150, 300).contiguous()
    for online in (False, True):
        chain = MotionChain(RecordingSampler(), torch.zeros(265), config, online=online)
        out = torch.cat([chain.push(cond), chain.finish()])
        expected = cond[(10 if online else 0):, :265].clamp(-0.5, 0.25)  # online: the first 10 rows are pre-roll
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)  # blends of equal rows round by ~1e-8
        torch.testing.assert_close(chain.anchor, cond[0, :265].clamp(-0.5, 0.25), rtol=0, atol=1e-6)
        assert out.min() == -0.5 and out.max() == 0.25


def reference_blink_rows(n, blink_n, open_n, rng):
    """The schedule rule written out plainly: blinks start after ``start`` open frames, then every blink_n + gap."""
    idx = [0] * n
    gaps = [open_n] if isinstance(open_n, int) and open_n > 0 else list(open_n) if isinstance(open_n, list) else []
    if isinstance(open_n, int) and open_n < 0:
        return idx
    start = gaps[0] if gaps else rng.randint(60, 100)
    end = gaps[-1] if gaps else rng.randint(60, 100)
    i, k = start, 1
    while i < n - max(end, blink_n):
        idx[i:i + blink_n] = list(range(blink_n))[: n - i]
        gap = gaps[k % len(gaps)] if gaps else rng.randint(60, 100)
        k += 1
        i += blink_n + gap
    return idx


@pytest.mark.parametrize("open_n", [-1, 0, 20, [30, 45]])
def test_blink_schedule(open_n):
    rows, starts = blink_schedule(500, 15, open_n, random.Random(3))
    assert rows.tolist() == reference_blink_rows(500, 15, open_n, random.Random(3))
    assert all(rows[s] == 0 and rows[s + 1] == 1 for s in starts)
    if open_n == 20:
        assert starts == list(range(20, 500 - 20, 35))  # every 15 + 20 frames, none in the last 20


def test_blinks_are_written_into_the_eye_keypoints_only():
    template = torch.from_numpy(fake_blink_template())
    blinks = plan_blinks(template, 20, -1, clip_frames=200, seed=0)
    frames, anchor = torch.randn(200, 265), torch.randn(265)
    out = add_blinks(frames, anchor, blinks)
    eye = [202 + c for c in EYE_EXP_COLUMNS]
    rest = [c for c in range(265) if c not in eye]
    torch.testing.assert_close(out[:, rest], frames[:, rest], rtol=0, atol=0)
    expected = anchor[eye] + template[torch.from_numpy(blinks.rows)][:, EYE_EXP_COLUMNS]
    torch.testing.assert_close(out[:, eye], expected)
    assert blinks.starts[0] == 20 and out[20 + 7, eye].sub(anchor[eye]).abs().max() > 1e-3  # mid-blink


def drive_inputs(seed=0, frames=6):
    source = source_keypoints(1, seed)
    rng = torch.Generator().manual_seed(seed)
    anchor = torch.cat([source[k][0].reshape(-1) for k in FIELDS]) + 0.05 * torch.randn(265, generator=rng)
    anchor[0] -= 1
    motion = Motion(anchor + 0.1 * torch.randn(frames, 265, generator=rng), anchor=anchor)
    pose_s = (bins_to_degrees(source["yaw"][:1]).item(), bins_to_degrees(source["pitch"][:1]).item())
    return source, pose_s, motion


def independent_drive(source, pose_s, motion, gains, template_eyes, delta_pitch=0.0):
    """The reference's MotionStitch for an image source, written out per frame from its description."""
    out = []
    lip, eye = keypoint_mask(LIP_KEYPOINTS), keypoint_mask(EYE_KEYPOINTS)
    for f in range(len(motion)):
        x = {}
        for name, span in FIELDS.items():
            value = motion.frames[f, span] + (1 if name == "scale" else 0)
            anchor = motion.anchor[span] + (1 if name == "scale" else 0)
            x[name] = source[name][0] + (value - anchor) * gains.get(name, 1.0)
        x["scale"] = source["scale"][0]  # images drive exp, pose and t; scale stays the source's
        a1 = lip if template_eyes else lip + eye
        exp = x["exp"] * a1 + source["exp"][0] * (1 - a1)
        if template_eyes:
            exp = exp + (motion.frames[f, FIELDS["exp"]] - motion.anchor[FIELDS["exp"]]) * eye
        pitch = bins_to_degrees(x["pitch"]) + delta_pitch
        yaw, roll = bins_to_degrees(x["yaw"]), bins_to_degrees(x["roll"])
        dx, dy = (yaw - pose_s[0]) * 0.26, (pitch - pose_s[1]) * 0.28
        exp = exp.clone()
        exp[33] += dx * (0.0007 if dx > 0 else 0.001)
        exp[45] += dx * (0.001 if dx > 0 else 0.0007)
        exp[34] -= dy * 0.001
        exp[46] -= dy * 0.001
        out.append(transform_keypoints(source["kp"][:1], pitch[None], yaw[None], roll[None], x["t"][None],
                                       exp[None], x["scale"][None])[0])
    return torch.stack(out)


def test_release_driving_ch_info_ratio_template_eyes_and_delta_pitch():
    source, pose_s, motion = drive_inputs()
    stored_scale = 1.8
    config = cfg(ch_info={"x_s_info_lst": [fake_keypoint_info(np.random.default_rng(5), stored_scale)],
                          "sc": np.zeros(63, np.float32), "eye_open_lst": [np.zeros((1, 2), np.float32)],
                          "eye_ball_lst": [np.zeros((1, 6), np.float32)]},
                 delta_eye_arr=fake_blink_template(), overall_ctrl_info={"delta_pitch": 2})
    _, x_d = driving_keypoints(source, pose_s, motion, range(len(motion)), [0] * len(motion), False, config.drive)
    ratio = np.float32(stored_scale) / source["scale"][0, 0].item()
    gains = {name: ratio for name in ("exp", "pitch", "yaw", "roll")}
    expected = independent_drive(source, pose_s, motion, gains, template_eyes=True, delta_pitch=2.0)
    torch.testing.assert_close(x_d, expected, rtol=0, atol=2e-6)
    plain = driving_keypoints(source, pose_s, motion, range(len(motion)), [0] * len(motion), False, cfg().drive)[1]
    torch.testing.assert_close(plain, independent_drive(source, pose_s, motion, {}, False), rtol=0, atol=2e-6)


def test_use_d_keys_gains_and_relative_d():
    source, pose_s, motion = drive_inputs(seed=1)
    gains = {"exp": 1.5, "pitch": 0.5, "yaw": 1.0, "roll": 2.0, "t": 0.0}
    config = cfg(use_d_keys=gains)
    fields, _ = driving_keypoints(source, pose_s, motion, [3], [0], False, config.drive)
    change = motion.frames[3, FIELDS["roll"]] - motion.anchor[FIELDS["roll"]]
    torch.testing.assert_close(fields["roll"][0], source["roll"][0] + change * 2.0)
    torch.testing.assert_close(fields["t"][0], source["t"][0])  # gain 0: no movement
    torch.testing.assert_close(fields["scale"][0], source["scale"][0])  # not listed: the source's
    absolute, _ = driving_keypoints(source, pose_s, motion, [3], [0], False, cfg(relative_d=False).drive)
    torch.testing.assert_close(absolute["yaw"][0], motion.frames[3, FIELDS["yaw"]])


def test_fades_toward_the_first_frame_or_the_source():
    motion = Motion(torch.randn(30, 265), anchor=torch.zeros(265))
    first = controls.fade(motion, 4, 5, ("exp",), "first frame")
    exp = FIELDS["exp"]
    torch.testing.assert_close(first.frames[2, exp], 0.5 * motion.frames[2, exp] + 0.5 * motion.frames[0, exp])
    torch.testing.assert_close(first.frames[-1, exp], motion.frames[0, exp])
    torch.testing.assert_close(first.frames[:, :202], motion.frames[:, :202])
    source = controls.fade(motion, 4, 5, ("exp",), "source")
    torch.testing.assert_close(source.frames[-1, exp], torch.zeros(63))


def test_registration_and_chain_settings_come_from_the_config():
    config = cfg(crop_scale=2.0, crop_vx_ratio=0.1, crop_vy_ratio=-0.2, crop_flag_do_rot=False, max_size=1024,
                 smo_k_s=5, template_n_frames=12, sampling_timesteps=7, overlap_v2=60, smo_k_d=5, online_mode=True,
                 flag_stitching=False, drive_eye=False, fade_type="s", fade_out_keys=["exp", "yaw"])
    reg = config.registration
    assert (reg.crop_scale, reg.crop_vx_ratio, reg.crop_vy_ratio, reg.crop_rotate, reg.max_size) == (2.0, 0.1, -0.2,
                                                                                                     False, 1024)
    assert reg.video_smoothing == 5 and reg.max_frames == 12
    assert (config.chain.steps, config.chain.overlap, config.chain.smoothing, config.chain.short_blend) == (7, 60, 5,
                                                                                                           True)
    assert not config.drive.stitching and config.drive.drive_eyes is False
    assert config.fade_target == "s" and config.fade_fields == ("exp", "yaw")


def test_a_sampling_plan_records_the_effective_settings():
    portrait = FakePortrait()

    lmdm = SimpleNamespace(config=SimpleNamespace(cond_dim=1103))
    config = cfg(sampling_timesteps=7, delta_eye_arr=fake_blink_template(), delta_eye_open_n=30)
    from ditto_core.motion import SamplerOptions

    plan = MotionPlan(lmdm, portrait, config, None, SamplerOptions(overlap=20, seed=3), clip_frames=300)
    meta = plan.metadata(12.0)
    assert meta["steps"] == 7 and meta["overlap"] == 20 and meta["seed"] == 3 and meta["config_sha256"] == "0" * 64
    assert meta["blinks"]["starts"] == [30, 75, 120, 165, 210, 255] and meta["emotion"] == 4
    video = FakePortrait(frames=3)
    assert MotionPlan(lmdm, video, config, clip_frames=300).blinks is None  # video sources keep their own eyes


# --- defaults = the release, in the CLI and the nodes --------------------------------------------------------

def changed_release(small_release, tmp_path, **changes) -> Path:
    """A copy of the small fake release whose offline cfg has ``changes`` in its default_kwargs."""
    from ditto_core.testing.fake_release import copy_release

    root = copy_release(small_release, tmp_path / "release")
    path = root / CONFIG_FILES["config"].path
    data = load_data_pickle(path)
    data["default_kwargs"].update(changes)
    path.write_bytes(pickle.dumps(data))
    return root


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "ditto_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True)


def test_render_follows_the_release_config_by_default(small_release, tmp_path):
    root = changed_release(small_release, tmp_path, sampling_timesteps=3, overlap_v2=20, delta_eye_open_n=5,
                           emo=4)
    out, motion_file = tmp_path / "out" / "a.mp4", tmp_path / "a.safetensors"
    out.parent.mkdir()
    done = run_cli("render", "--portrait", ROOT / "assets/portrait.jpg", "--audio", ROOT / "assets/speech.wav",
                   "--models", root, "--out", out, "--save-motion", motion_file, "--device", "cpu")
    assert done.returncode == 0, done.stderr
    meta = Motion.load(motion_file).metadata
    assert meta["steps"] == 3 and meta["overlap"] == 20 and meta["reset_every"] == 1 and meta["clipped"]
    assert meta["config"] == "v0.4_hubert_cfg_pytorch.pkl" and len(meta["config_sha256"]) == 64
    assert meta["emotion"] == 4 and meta["blinks"]["starts"][:2] == [5, 25]
    code = run_cli("render", "--portrait", ROOT / "assets/portrait.jpg", "--audio", ROOT / "assets/speech.wav",
                   "--models", root, "--out", out, "--save-motion", motion_file, "--device", "cpu", "--code-defaults",
                   "--steps", "2")
    assert code.returncode == 0, code.stderr
    meta = Motion.load(motion_file).metadata
    assert meta["steps"] == 2 and meta["overlap"] == 10 and meta["blinks"] is None and meta["config_sha256"] is None


def test_render_refuses_a_config_that_would_run_a_command(small_release, tmp_path):
    from ditto_core.testing.fake_release import copy_release

    root = copy_release(small_release, tmp_path / "release")
    marker = tmp_path / "ran"
    cfg_path = root / CONFIG_FILES["config"].path
    cfg_path.write_bytes(pickle.dumps({"default_kwargs": {"emo": Payload(os.system, (f"touch {marker}",))}}))
    out = tmp_path / "out.mp4"
    done = run_cli("render", "--portrait", ROOT / "assets/portrait.jpg", "--audio", ROOT / "assets/speech.wav",
                   "--models", root, "--out", out, "--device", "cpu")
    assert done.returncode == 1 and str(cfg_path) in done.stderr and "refused without running" in done.stderr
    assert done.stderr.count("error:") == 1 and "Traceback" not in done.stderr
    assert not marker.exists() and not out.exists() and not list(tmp_path.glob("*.mp4*"))


def test_config_command_shows_the_release_settings(small_release):
    text = run_cli("config", "--models", small_release)
    assert text.returncode == 0 and "sampling_timesteps: 25" in text.stdout and "emo: " in text.stdout
    described = json.loads(run_cli("config", "--models", small_release, "--online", "--json").stdout)
    assert described["default_kwargs"]["overlap_v2"] == 70
    assert described["default_kwargs"]["delta_eye_arr"] == {"array": [15, 63], "dtype": "float32"}
    assert described["default_kwargs"]["overall_ctrl_info"] == {"delta_pitch": 2}


def test_nodes_default_to_the_release_config(small_release, tmp_path):
    from comfy_stubs import install, load_pack, register

    from ditto_core.testing.fake_release import copy_release

    base = tmp_path / "comfy"
    install(base)
    pack = load_pack()
    copy_release(small_release, base / "models" / "ditto")
    nodes = register(pack)
    (models,) = nodes["DittoLoadModels"].execute(release="ditto_pytorch", device="cpu")
    image = torch.from_numpy(np.random.default_rng(0).integers(60, 200, (1, 160, 200, 3)).astype(np.float32) / 255)
    audio = {"waveform": torch.randn(1, 1, 16000) * 0.1, "sample_rate": 16000}
    (portrait,) = nodes["DittoRegisterPortrait"].execute(models, image, "first image", 0, "as released", 2.3,
                                                          -0.125, 0, 0.5)
    (features, _) = nodes["DittoEncodeAudio"].execute(models, audio)
    spec = register(pack)["DittoSampleMotion"].INPUT_TYPES()["required"]
    defaults = {name: spec[name][1]["default"] for name in ("emotion", "seed", "steps", "overlap", "smoothing")}
    motion = nodes["DittoSampleMotion"].execute(models, portrait, features, **defaults).result[0]
    assert motion.metadata["steps"] == 25 and motion.metadata["overlap"] == 10  # the fake offline cfg's
    assert motion.metadata["emotion"] == "sequence of 600 emotion rows" and motion.metadata["clipped"]
    chosen = nodes["DittoSampleMotion"].execute(models, portrait, features, "happy", 0, 2, 20, 1).result[0]
    assert (chosen.metadata["steps"], chosen.metadata["overlap"], chosen.metadata["emotion"]) == (2, 20, "happy")
    (code,) = nodes["DittoLoadModels"].execute(release="ditto_pytorch", device="cpu", settings="reference code defaults")
    assert code.config.name == "reference code defaults" and code.config.chain.steps == 50
    assert models.config.drive.frame_controls == {"delta_pitch": 2.0} and models.online_config.chain.overlap == 70
    for name in CONFIG_FILES.values():
        (base / "models" / "ditto" / name.path).unlink()
    with pytest.raises(Exception) as err:  # the pack's own copy of CheckpointError
        nodes["DittoLoadModels"].execute(release="ditto_pytorch", device="cpu")
    assert type(err.value).__name__ == "CheckpointError" and "v0.4_hubert_cfg_pytorch.pkl" in str(err.value)
    assert "choose 'reference code defaults' (settings)" in str(err.value)
    nodes["DittoLoadModels"].execute(release="ditto_pytorch", device="cpu", settings="reference code defaults")


def test_numpy1_pickles_really_use_numpy_core_names():
    """The 1.x stand-in above renames what numpy 2 writes; check it produced loadable numpy.core references."""
    data = numpy1_pickle({"a": np.zeros(3, np.float32)}, 4)
    assert b"numpy.core.multiarray" in data
    assert pickle.Unpickler(io.BytesIO(data)).load()["a"].shape == (3,)
