"""Motion sampling, chaining, the Motion type, conditions and driving."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ditto_core.audio import AudioFeatures
from ditto_core.keypoints import bins_to_degrees, transform_keypoints
from ditto_core.motion import (
    ConditionError,
    Motion,
    MotionChain,
    MotionFileError,
    SamplerOptions,
    build_conditions,
    emotion_timeline,
    emotion_vector,
)
from ditto_core.motion.drive import DriveOptions, driving_keypoints, gaze_offsets
from ditto_core.motion.motion import FIELDS, StreamResampler, keypoint_fields_to_vector
from ditto_core.motion.sampler import ChainConfig, smooth_rows
from ditto_core.networks import load_networks
from ditto_core.pipeline import ConditionSource, motion_conditions, sample_motion
from ditto_core.portrait import load_face_models, register_portrait
from ditto_core.release_config import ReleaseConfig

ROOT = Path(__file__).resolve().parents[1]


class EchoSampler:
    """Stands in for the LMDM: a window's motion is the first 265 condition values of each row."""

    shape = (1, 80, 265)

    def __call__(self, cond_frame, cond):
        return cond[:, :265].clone()


def reference_chain(cond, overlap, smoothing, sampler):
    """The reference's offline chaining, written out plainly (numpy, as in its audio2motion.py)."""
    T, V, F = 80, 80 - overlap, overlap
    alpha = np.arange(F, dtype=np.float32).reshape(-1, 1) / max(F, 1)

    def smo(seq, s, e):
        if smoothing <= 1:
            return seq
        copy, half = seq.copy(), smoothing // 2
        for i in range(s, e):
            seq[i, :202] = copy[max(0, i - half) : min(len(seq), i + half + 1), :202].mean(0)
        return seq

    res, idx, n = None, 0, len(cond)
    while idx < n:
        window = cond[idx : idx + T]
        if len(window) < T:
            window = np.concatenate([window, np.repeat(window[-1:], T - len(window), 0)])
        pred = sampler(None, torch.from_numpy(window)).numpy()
        if res is None:
            res = smo(pred.copy(), 0, T)
        else:
            res[-F:] = res[-F:] * (1 - alpha) + pred[T - V - F : T - V] * alpha if F else res[-F:]
            res = np.concatenate([res, pred[T - V :]])
            res = smo(res, len(res) - V - F, len(res) - V + 1)
        idx += V
    return smo(res[:n], 0, n)


def _chain(cond, overlap, smoothing, chunks, online=False):
    chain = MotionChain(EchoSampler(), torch.zeros(265), ChainConfig(overlap=overlap, smoothing=smoothing),
                        online=online)
    out, position = [], 0
    for size in chunks:
        out.append(chain.push(cond[position : position + size]))
        position += size
    if position < len(cond):
        out.append(chain.push(cond[position:]))
    out.append(chain.finish())
    return torch.cat(out), chain


@pytest.mark.parametrize("overlap", [0, 1, 10, 39, 40, 70, 75, 79])
@pytest.mark.parametrize("n", [1, 79, 80, 81, 150, 333])
def test_chaining_keeps_every_frame_in_order(overlap, n):
    """With smoothing off, an echoing model must come back as the condition sequence itself: nothing dropped,
    repeated or shifted at window seams, whatever the overlap (the reference's online path drops frames below
    overlap 40)."""
    cond = torch.arange(n, dtype=torch.float32)[:, None].expand(n, 300).contiguous()
    out, _ = _chain(cond, overlap, 1, [n])
    torch.testing.assert_close(out, cond[:, :265])


@pytest.mark.parametrize("overlap", [0, 10, 45, 70])
@pytest.mark.parametrize("smoothing", [1, 3, 5])
def test_chaining_matches_the_reference_algorithm(overlap, smoothing):
    rng = np.random.default_rng(overlap + smoothing)
    cond = rng.standard_normal((237, 300)).astype(np.float32)
    out, _ = _chain(torch.from_numpy(cond), overlap, smoothing, [237])
    np.testing.assert_allclose(out.numpy(), reference_chain(cond, overlap, smoothing, EchoSampler()), atol=1e-5)


@pytest.mark.parametrize("chunks", [[1] * 300, [7, 13, 100], [80], [69, 1, 1, 200]])
@pytest.mark.parametrize("overlap", [10, 70])
@pytest.mark.parametrize("online", [False, True])
def test_pushing_in_pieces_equals_pushing_at_once(chunks, overlap, online):
    cond = torch.from_numpy(np.random.default_rng(0).standard_normal((260, 300)).astype(np.float32))
    at_once, _ = _chain(cond, overlap, 3, [260], online)
    pieces, _ = _chain(cond, overlap, 3, chunks, online)
    torch.testing.assert_close(pieces, at_once, rtol=0, atol=0)


def test_frames_come_out_as_soon_as_final():
    chain = MotionChain(EchoSampler(), torch.zeros(265), ChainConfig(overlap=70, smoothing=3))
    assert len(chain.push(torch.zeros(79, 300))) == 0  # no window yet
    first = chain.push(torch.zeros(1, 300))
    assert len(first) == 80 - 70 - 1  # the last `overlap` rows (and one for smoothing) may still change
    assert len(chain.push(torch.zeros(10, 300))) == 10  # every further 10 rows complete one more window


@pytest.mark.parametrize("overlap", [1, 10, 39, 40, 70, 75])
def test_online_preroll_frames_are_generated_but_not_returned(overlap):
    cond = torch.arange(200, dtype=torch.float32)[:, None].expand(200, 300).contiguous()
    out, chain = _chain(cond, overlap, 1, [200], online=True)
    torch.testing.assert_close(out, cond[overlap:, :265])  # every real frame, in order, for every overlap
    torch.testing.assert_close(chain.anchor, cond[0, :265])


def test_online_frames_arrive_every_window():
    chain = MotionChain(EchoSampler(), torch.zeros(265), ChainConfig(overlap=70, smoothing=3), online=True)
    assert len(chain.push(torch.zeros(70, 300))) == 0  # the silent pre-roll
    assert len(chain.push(torch.zeros(10, 300))) == 0  # window 1 emits pre-roll frames only
    assert len(chain.push(torch.zeros(10, 300))) == 10  # window 2: real frames 0-9, emitted as the reference does
    assert len(chain.push(torch.zeros(10, 300))) == 10


def test_smooth_rows_reads_the_input_not_its_own_output():
    seq = torch.zeros(5, 265)
    seq[2, :202] = 3
    out = smooth_rows(seq, 0, 5, 3)
    torch.testing.assert_close(out[:, 0], torch.tensor([0.0, 1, 1, 1, 0]))
    assert (out[:, 202:] == 0).all()


@pytest.mark.parametrize("bad, message", [(dict(overlap=80), "overlap"), (dict(steps=0), "steps"), (dict(smoothing=-1), "smoothing")])
def test_chain_settings_are_validated(bad, message):
    with pytest.raises(ValueError, match=message):
        MotionChain(EchoSampler(), torch.zeros(265), ChainConfig(**bad))


# --- conditions --------------------------------------------------------------------------------------------

def test_emotion_encodings():
    one = emotion_vector("neutral")
    assert one[4] == pytest.approx(np.exp(8) / (np.exp(8) + 7), rel=1e-6)
    assert one[0] == pytest.approx(1 / (np.exp(8) + 7), rel=1e-5)
    pair = emotion_vector([3, "neutral"])
    assert pair[3] == pytest.approx(0.499497, abs=1e-6) and pair[4] == pytest.approx(0.499497, abs=1e-6)
    weights = emotion_vector([0.0, 0, 0, 2.0, 2.0, 0, 0, 0.0])
    np.testing.assert_allclose(weights, [0, 0, 0, 0.5, 0.5, 0, 0, 0])
    for bad in ("bored", 8, [], [0.0] * 8):
        with pytest.raises(ConditionError):
            emotion_vector(bad)


def test_emotion_timeline_segments():
    timeline = emotion_timeline([(0.0, "neutral"), (1.0, "happy"), (2.0, ["angry", "sad"])], 75)
    assert timeline.shape == (75, 8)
    assert timeline[:25].argmax(1).tolist() == [4] * 25
    assert timeline[25:50].argmax(1).tolist() == [3] * 25
    np.testing.assert_allclose(timeline[50:, [0, 5]], 0.499497, atol=1e-6)
    assert (emotion_timeline("happy", 3) == emotion_vector("happy")).all()


def test_condition_layout_order():
    n = 4
    audio = torch.full((n, 1024), 1.0)
    cond = build_conditions(audio, np.full((n, 8), 2, np.float32), np.full((n, 2), 3, np.float32),
                            np.full((n, 6), 4, np.float32), np.full(63, 5, np.float32), 1103)
    assert cond.shape == (4, 1103)
    for value, (start, stop) in zip(range(1, 6), [(0, 1024), (1024, 1032), (1032, 1034), (1034, 1040), (1040, 1103)]):
        assert (cond[:, start:stop] == value).all()
    with pytest.raises(ConditionError, match="1059-wide"):
        build_conditions(audio, np.zeros((n, 8), np.float32), np.zeros((n, 2), np.float32),
                         np.zeros((n, 6), np.float32), np.zeros(63, np.float32), 1059)


# --- Motion ------------------------------------------------------------------------------------------------

def _motion(n=30, seed=0, fps=25.0):
    return Motion(torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 265)).astype(np.float32)), fps,
                  metadata={"seed": seed})


def test_motion_fields_and_degrees():
    m = _motion()
    assert m.field("exp").shape == (30, 63) and m.field("pitch").shape == (30, 66)
    torch.testing.assert_close(m.field("scale"), m.frames[:, :1] + 1)
    torch.testing.assert_close(m.degrees("yaw"), bins_to_degrees(m.frames[:, 67:133]))
    fields = {name: m.field(name) for name in FIELDS}
    torch.testing.assert_close(keypoint_fields_to_vector(fields), m.frames)


def test_motion_save_load_round_trip(tmp_path):
    m = _motion()
    path = m.save(tmp_path / "m.safetensors")
    loaded = Motion.load(path)
    torch.testing.assert_close(loaded.frames, m.frames)
    torch.testing.assert_close(loaded.anchor, m.anchor)
    assert loaded.fps == 25.0 and loaded.metadata == {"seed": 0}


def test_motion_file_errors(tmp_path):
    with pytest.raises(MotionFileError, match="not found"):
        Motion.load(tmp_path / "absent.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(MotionFileError, match="not a readable motion file"):
        Motion.load(corrupt)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(3)}, str(other))
    with pytest.raises(MotionFileError, match="not a Ditto motion"):
        Motion.load(other)


def test_the_three_hand_made_motions_of_issue_27_are_refused(tmp_path):
    """A copy of assets/nod.safetensors with one header value changed: fps 0, -5, nan, inf, 1e308; an anchor of
    NaN; version 99."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(ROOT / "assets" / "nod.safetensors"), "pt") as handle:
        header, tensors = handle.metadata(), {key: handle.get_tensor(key) for key in handle.keys()}

    def variant(name: str, changed: dict | None = None, **values) -> Path:
        path = tmp_path / f"{name}.safetensors"
        save_file({**tensors, **(changed or {})}, str(path), metadata={**header, **values})
        return path

    for fps in ("0", "-5", "nan", "inf", "1e308"):
        path = variant(f"fps_{fps}", fps=fps)
        with pytest.raises(MotionFileError, match=rf"{path}: fps is .*; a motion's frame rate must be a number from "
                                                  rf"1 to 1000"):
            Motion.load(path)
    path = variant("nan_anchor", {"anchor": torch.full((265,), float("nan"))})
    with pytest.raises(MotionFileError, match=rf"{path}: 265 NaN or infinite value\(s\) in the anchor"):
        Motion.load(path)
    path = variant("v99", version="99")
    with pytest.raises(MotionFileError, match=rf"{path} was made by a newer version of the pack \(motion format "
                                              rf"version 99; this one reads versions up to 2\): update ComfyUI-Ditto"):
        Motion.load(path)
    assert len(Motion.load(variant("as_shipped"))) == 100  # the unchanged copy still loads


def test_a_motion_made_in_memory_is_checked_the_same_way():
    with pytest.raises(ValueError, match="fps is 0; a motion's frame rate must be a number from 1 to 1000"):
        Motion(torch.zeros(3, 265), fps=0)
    with pytest.raises(ValueError, match=r"2 NaN or infinite value\(s\) in the frames, the first in frame 1"):
        Motion(torch.zeros(3, 265).index_put_((torch.tensor([1, 2]), torch.tensor([0, 0])), torch.tensor(math.inf)))
    with pytest.raises(ValueError, match="fps is nan"):
        Motion(torch.zeros(3, 265)).resample(math.nan)


def test_motion_time_edits():
    a, b = _motion(30, 0), _motion(20, 1)
    joined = a.concat(b)
    assert len(joined) == 50
    torch.testing.assert_close(joined.frames[30:], b.frames)
    torch.testing.assert_close(joined.anchor, a.anchor)
    part = joined.slice(10, 40)
    torch.testing.assert_close(part.frames, joined.frames[10:40])
    torch.testing.assert_close(part.anchor, a.anchor)
    with pytest.raises(ValueError, match="empty"):
        a.slice(40)
    with pytest.raises(ValueError, match="resample one first"):
        a.concat(_motion(5, fps=30.0))
    up = a.resample(50.0)
    assert len(up) == 60 and up.fps == 50.0
    torch.testing.assert_close(up.frames[::2], a.frames, rtol=0, atol=0)  # shared instants: unchanged
    linear = [c for c in range(265) if not 1 <= c < 199]
    torch.testing.assert_close(up.frames[1, linear], (a.frames[0, linear] + a.frames[1, linear]) / 2)
    assert len(a.resample(12.5)) == 15


@pytest.mark.parametrize("fps", [24.0, 30.0, 50.0, 60.0, 10.0])
def test_resampling_moves_the_pose_through_its_angles(fps):
    """A new frame's head angle lies between its two neighbours' (linear in time), and its bin distribution is
    one pose (one peak), not a blend of two."""
    bins = torch.arange(66, dtype=torch.float32)
    yaw = torch.tensor([0.0, 20.0, 5.0, -10.0, -10.0, 30.0])
    frames = torch.zeros(6, 265)
    for i, angle in enumerate(yaw):
        frames[i, FIELDS["yaw"]] = -0.5 * ((bins - (angle / 3 + 32.5)) / 1.5) ** 2
    motion = Motion(frames)
    out = motion.resample(fps)
    assert len(out) == math.ceil(6 * fps / 25 - 1e-9)
    times = torch.arange(len(out), dtype=torch.float64) * 25 / fps
    low = times.floor().long().clamp(max=5)
    high = (low + 1).clamp(max=5)
    w = (times - low).clamp(max=1).float()
    source = motion.degrees("yaw")
    expected = source[low] * (1 - w) + source[high] * w
    torch.testing.assert_close(out.degrees("yaw"), expected, atol=1e-3, rtol=0)
    assert (out.degrees("yaw") <= torch.maximum(source[low], source[high]) + 1e-3).all()
    assert (out.degrees("yaw") >= torch.minimum(source[low], source[high]) - 1e-3).all()
    probs = out.field("yaw").softmax(-1)
    assert (probs.max(-1).values > 0.2).all()  # still peaked: a linear blend of 0° and 20° would not be


def test_streaming_resampler_equals_resampling_at_once():
    rng = torch.Generator().manual_seed(3)
    motion = Motion(torch.randn(97, 265, generator=rng))
    for fps in (24.0, 30.0, 60.0):
        count = math.ceil(97 / 25 * fps)
        at_once = motion.resample(fps, count)
        streamer = StreamResampler(25.0, fps, count)
        blocks, position = [], 0
        for size in (1, 13, 40, 2, 41):
            blocks.append(streamer.push(motion.frames[position : position + size]))
            position += size
        blocks.append(streamer.finish())
        torch.testing.assert_close(torch.cat(blocks), at_once.frames, rtol=0, atol=0)


def test_motion_blend_with_a_curve():
    a, b = _motion(10, 0), _motion(10, 1)
    curve = torch.linspace(0, 1, 10)
    mixed = a.blend(b, curve)
    torch.testing.assert_close(mixed.frames[0], a.frames[0])
    torch.testing.assert_close(mixed.frames[-1], b.frames[-1])
    torch.testing.assert_close(a.blend(b, 0.25).frames, 0.75 * a.frames + 0.25 * b.frames)
    with pytest.raises(ValueError, match="one value per frame"):
        a.blend(b, torch.ones(3))
    with pytest.raises(ValueError, match="10 and 5 frames"):
        a.blend(_motion(5), 0.5)


def test_motion_rejects_bad_frames():
    for frames, message in ((torch.zeros(3, 264), r"\[N, 265\]"), (torch.zeros(0, 265), "no frames"),
                            (torch.full((2, 265), float("nan")), "NaN")):
        with pytest.raises(ValueError, match=message):
            Motion(frames)


# --- driving -----------------------------------------------------------------------------------------------

def _source(seed=0, frames=1):
    rng = np.random.default_rng(seed)
    shapes = dict(pitch=66, yaw=66, roll=66, t=3, exp=63, scale=1, kp=63)
    out = {k: torch.from_numpy(rng.standard_normal((frames, d)).astype(np.float32) * 0.3) for k, d in shapes.items()}
    out["scale"] = out["scale"] + 1
    return out


def _degrees(source):
    return bins_to_degrees(source["yaw"][:1]).item(), bins_to_degrees(source["pitch"][:1]).item()


def test_motion_equal_to_its_anchor_reproduces_the_source_keypoints():
    source = _source()
    m = Motion(torch.randn(1, 265).expand(5, 265).contiguous())
    _, x_d = driving_keypoints(source, _degrees(source), m, range(5), [0] * 5, False, DriveOptions())
    x_s = transform_keypoints(source["kp"], *(bins_to_degrees(source[k]) for k in ("pitch", "yaw", "roll")),
                              source["t"], source["exp"], source["scale"])
    torch.testing.assert_close(x_d, x_s.expand(5, 21, 3), rtol=1e-5, atol=1e-5)


def test_relative_driving_adds_the_motion_change_and_masks_expression():
    source = _source()
    frames = torch.zeros(2, 265)
    frames[1, 202:] = 0.05  # every expression value moves
    frames[1, 199] = 0.1  # and t_x
    m = Motion(frames)
    fields, _ = driving_keypoints(source, _degrees(source), m, [1], [0], False, DriveOptions())
    from ditto_core.motion.drive import EYE_KEYPOINTS, LIP_KEYPOINTS

    driven = torch.zeros(21, dtype=torch.bool)
    driven[list(LIP_KEYPOINTS + EYE_KEYPOINTS)] = True
    delta = (fields["exp"] - source["exp"]).view(21, 3)
    torch.testing.assert_close(delta[driven], torch.full((11, 3), 0.05), rtol=1e-5, atol=1e-6)
    assert (delta[~driven] == 0).all()
    assert fields["t"][0, 0] == pytest.approx(source["t"][0, 0].item() + 0.1, abs=1e-6)
    torch.testing.assert_close(fields["scale"], source["scale"])  # scale is not driven by default


def test_video_sources_drive_expression_only():
    source = _source(frames=3)
    m = Motion(torch.randn(4, 265))
    fields, _ = driving_keypoints(source, _degrees(source), m, [1, 2], [1, 2], True, DriveOptions())
    for name in ("pitch", "yaw", "roll", "t", "scale"):
        torch.testing.assert_close(fields[name], source[name][[1, 2]])


def test_gaze_offsets_formula():
    out = gaze_offsets(torch.tensor([10.0, -10.0]), torch.tensor([5.0, 5.0]))
    assert out[0, 33] == pytest.approx(2.6 * 0.0007) and out[0, 45] == pytest.approx(2.6 * 0.001)
    assert out[1, 33] == pytest.approx(-2.6 * 0.001) and out[1, 45] == pytest.approx(-2.6 * 0.0007)
    assert out[0, 34] == pytest.approx(-1.4 * 0.001) and out[0, 46] == pytest.approx(-1.4 * 0.001)
    assert (out[:, [i for i in range(63) if i not in (33, 34, 45, 46)]] == 0).all()


# --- sampling with the real loader -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registered(small_release):
    networks = load_networks(small_release)
    image = np.random.default_rng(0).integers(60, 200, (256, 256, 3), dtype=np.uint8)
    portrait = register_portrait(image, networks.appearance_extractor, networks.motion_extractor,
                                 load_face_models(small_release))
    return networks, portrait


def _features(n, seed=0):
    frames = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, 1024)).astype(np.float32))
    return AudioFeatures(frames=frames, duration_s=n / 25)


def test_sampled_motion_has_one_frame_per_audio_frame_and_is_seeded(registered):
    networks, portrait = registered
    features = _features(95)
    code = ReleaseConfig.code_defaults()
    a = sample_motion(networks.lmdm, portrait, features, code, "happy", SamplerOptions(steps=3, seed=7))
    b = sample_motion(networks.lmdm, portrait, features, code, "happy", SamplerOptions(steps=3, seed=7))
    c = sample_motion(networks.lmdm, portrait, features, code, "happy", SamplerOptions(steps=3, seed=8))
    assert len(a) == 95 and a.fps == 25
    torch.testing.assert_close(a.frames, b.frames, rtol=0, atol=0)
    assert (a.frames - c.frames).abs().max() > 1e-3
    assert a.metadata["seed"] == 7 and a.metadata["emotion"] == "happy" and a.metadata["steps"] == 3
    assert a.metadata["config"] == "reference code defaults" and a.metadata["blinks"] is None
    torch.testing.assert_close(a.anchor, a.frames[0])


def test_conditions_follow_the_portrait(registered):
    networks, portrait = registered
    source = ConditionSource.of(portrait, ReleaseConfig.code_defaults())
    cond = motion_conditions(source, _features(10).frames, "sad", 1103)
    np.testing.assert_allclose(cond[:, 1032:1034].numpy(), np.repeat(portrait.eye_open, 10, 0))
    np.testing.assert_allclose(cond[:, 1040:].numpy(), np.repeat(portrait.canonical_kp[None], 10, 0))
    assert cond[:, 1024:1032].argmax(1).tolist() == [5] * 10


def test_motion_from_a_driving_video(small_release, registered):
    from ditto_core.pipeline import motion_from_video
    from ditto_core.portrait.registration import extract_motion_keypoints

    networks, _ = registered
    face_models = load_face_models(small_release)
    rng = np.random.default_rng(9)
    video = [rng.integers(60, 200, (200, 160, 3), dtype=np.uint8) for _ in range(4)]
    motion = motion_from_video(video, networks.motion_extractor, face_models, fps=30.0)
    assert len(motion) == 4 and motion.fps == 30.0 and motion.metadata["source"] == "driving-video"
    keypoints = extract_motion_keypoints(video, networks.motion_extractor, face_models)
    torch.testing.assert_close(motion.field("exp"), keypoints["exp"])
    torch.testing.assert_close(motion.field("scale"), keypoints["scale"])
    torch.testing.assert_close(motion.field("yaw"), keypoints["yaw"])
    torch.testing.assert_close(motion.anchor, motion.frames[0])
