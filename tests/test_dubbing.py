"""Dubbing a real video: loop policies, the source's frame rate, frames without a face, the command line and the
nodes, on a fake release (its detector and face landmarker find no face in a black frame)."""

import math
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from comfy_stubs import install, load_pack, register

from ditto_core.audio import load_audio
from ditto_core.audio.clip import num_video_frames
from ditto_core.motion import Motion
from ditto_core.networks import load_networks
from ditto_core.portrait import NoFaceError, RegistrationOptions, load_face_models, register_portrait
from ditto_core.portrait.geometry import CROP_SIZE, warp
from ditto_core.portrait.registration import (
    SourceTimeline,
    face_runs,
    held_face_frames,
    mirror_index,
    source_appearance,
)
from ditto_core.render import RenderOptions, render_frames
from ditto_core.stream import clip_for_source
from ditto_core.testing.fake_release import copy_release
from ditto_core.video import VideoEncoding, read_video, video_rate, write_mp4

ROOT = Path(__file__).resolve().parents[1]
CUT = range(3, 5)  # the source frames of the test video that are black: a cut, no face


def _frame(seed: int, h=96, w=112) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([128 + 60 * np.sin(xx / 17 + c + seed / 3) * np.cos(yy / 23 + 2 * c) for c in range(3)], -1)
    return np.clip(base, 0, 255).astype(np.uint8)


def _video_frames(count=8) -> np.ndarray:
    """``[count, 96, 112, 3]``: a moving picture, black at the CUT frames."""
    frames = np.stack([_frame(i) for i in range(count)])
    frames[list(CUT)] = 0
    return frames


@pytest.fixture(scope="module")
def models(small_release):
    return load_networks(small_release), load_face_models(small_release)


def _register(frames, models, fps=None, **options):
    networks, face_models = models
    return register_portrait(frames, networks.appearance_extractor, networks.motion_extractor, face_models,
                             RegistrationOptions(**{"video_smoothing": 1, **options}), fps)


# --- which source frame shows when ----------------------------------------------------------------------------


def test_loop_policies_give_the_source_frame_of_each_output_frame():
    ping_pong = SourceTimeline(4)
    assert [ping_pong.frame(i) for i in range(12)] == [0, 1, 2, 3, 3, 2, 1, 0, 0, 1, 2, 3]
    once = SourceTimeline(4, loop="once")
    assert [once.frame(i) for i in range(7)] == [0, 1, 2, 3, 3, 3, 3]
    shortest = SourceTimeline(4, loop="shortest")
    assert [shortest.frame(i) for i in range(4)] == [0, 1, 2, 3] and shortest.output_frames() == 4
    assert ping_pong.output_frames() is None and once.output_frames(30) is None
    assert SourceTimeline(1, loop="shortest").output_frames() is None  # an image never ends
    assert ping_pong.frame(-3) == 0 == once.frame(-3)  # the online pre-roll shows the first frame


@pytest.mark.parametrize("source_fps, fps", [(30.0, 25.0), (25.0, 60.0), (24.0, 30.0), (29.97, 29.97)])
def test_a_source_video_keeps_its_own_timing_at_any_output_rate(source_fps, fps):
    timeline = SourceTimeline(1000, source_fps, "once")
    for index in range(0, 200, 7):
        seconds = index / fps
        assert abs(timeline.frame(index, fps) / source_fps - seconds) <= 0.5 / source_fps + 1e-9
    shortest = SourceTimeline(90, source_fps, "shortest")
    assert shortest.output_frames(fps) == math.ceil(round(90 / source_fps * fps, 9))
    mirrored = SourceTimeline(10, source_fps)
    assert [mirrored.frame(i, fps) for i in range(40)] == [
        mirror_index(int(i * source_fps / fps + 0.5), 10) for i in range(40)]


def test_an_unknown_loop_policy_is_refused():
    with pytest.raises(ValueError, match="unknown loop policy 'bounce'; choose one of ping-pong, once, shortest"):
        RegistrationOptions(loop="bounce")


def test_held_face_frames_take_the_last_face_before_or_the_first_after():
    has_face = np.array([False, True, True, False, False, True, False])
    assert held_face_frames(has_face).tolist() == [1, 1, 2, 2, 2, 5, 5]


# --- frames without a face ------------------------------------------------------------------------------------


def test_frames_without_a_face_are_marked_and_the_track_resumes(models):
    frames = _video_frames()
    portrait = _register(frames, models, fps=30.0)
    assert portrait.has_face.tolist() == [i not in CUT for i in range(8)] and portrait.faceless_frames == 2
    assert "2 frame(s) without a face pass through unchanged (the first: frame 3)" in portrait.video_summary()
    for name, values in portrait.keypoints.items():  # a faceless frame holds the last face frame's values
        torch.testing.assert_close(values[3], values[2])
        torch.testing.assert_close(values[4], values[2])
    np.testing.assert_array_equal(portrait.crop_to_image[4], portrait.crop_to_image[2])
    # after the cut the face is found afresh: frame 5 registers as if it were the first frame
    fresh = _register(frames[5:], models)
    np.testing.assert_array_equal(portrait.crop_to_image[5], fresh.crop_to_image[0])
    torch.testing.assert_close(portrait.keypoints["exp"][5], fresh.keypoints["exp"][0])


def test_smoothing_stays_within_each_run_of_face_frames(models):
    frames = _video_frames(12)
    portrait = _register(frames, models, video_smoothing=13)  # the release's smoothing, wider than each run
    before, after = _register(frames[:3], models, video_smoothing=13), _register(frames[5:], models, video_smoothing=13)
    for name, values in portrait.keypoints.items():
        torch.testing.assert_close(values[:3], before.keypoints[name])
        torch.testing.assert_close(values[5:], after.keypoints[name])
        torch.testing.assert_close(values[3], values[2])  # the cut holds the last face frame's smoothed value
    assert face_runs(portrait.has_face) == [(0, 3), (5, 12)]


def test_a_video_with_no_face_at_all_is_one_clear_error(models):
    with pytest.raises(NoFaceError, match="no face found in any of the 3 frames of the source video"):
        _register(np.zeros((3, 64, 64, 3), np.uint8), models)


def test_a_video_s_appearance_is_made_from_each_frame_s_crop_when_rendered(models):
    networks, _ = models
    frames = _video_frames()
    portrait = _register(frames, models)
    assert portrait.appearance is None
    # frame 0 and frame 5 (just after the cut) are found afresh, like a still image of that frame
    for index in (0, 5):
        still = _register(frames[index], models)
        volume = source_appearance(portrait, [index], networks.appearance_extractor, torch.device("cpu"))
        torch.testing.assert_close(volume, still.appearance, rtol=0, atol=1e-5)
    crop = warp(frames[6], portrait.image_to_crop[6], CROP_SIZE)  # and a tracked frame from its own crop
    with torch.inference_mode():
        small = cv2.resize(crop, (256, 256), interpolation=cv2.INTER_AREA)
        expected = networks.appearance_extractor(torch.from_numpy(small / 255.0).float().permute(2, 0, 1)[None])
    volumes = source_appearance(portrait, [6, 6], networks.appearance_extractor, torch.device("cpu"))
    torch.testing.assert_close(volumes, expected.expand(2, *expected.shape[1:]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("loop", ["ping-pong", "once"])
def test_faceless_source_frames_render_unchanged(models, loop):
    networks, _ = models
    frames = _video_frames()
    portrait = _register(frames, models, loop=loop)
    motion = Motion(torch.from_numpy(np.random.default_rng(1).standard_normal((14, 265)).astype(np.float32)) * 0.1)
    rendered = list(render_frames(networks, portrait, motion, RenderOptions(batch_size=4)))
    for index, frame in enumerate(rendered):
        source = portrait.source_frame(index)
        if source in CUT:
            np.testing.assert_array_equal(frame, frames[source])
        else:
            assert np.abs(frame.astype(int) - frames[source]).max() > 0  # the face was rendered in
    expected_sources = ([mirror_index(i, 8) for i in range(14)] if loop == "ping-pong" else
                        [min(i, 7) for i in range(14)])
    assert [portrait.source_frame(i) for i in range(14)] == expected_sources
    crops = list(render_frames(networks, portrait, motion.slice(3, 4), RenderOptions(paste_back=False),
                               first_index=3))
    np.testing.assert_array_equal(crops[0], warp(frames[3], portrait.image_to_crop[3], CROP_SIZE))


@pytest.mark.parametrize("fps", [24.0, 25.0, 29.97, 30.0, 50.0, 60.0])
def test_cutting_speech_to_a_frame_count_gives_exactly_that_many_frames(fps):
    clip = load_audio(np.zeros(16000 * 400, np.float32), 16000)
    for frames in range(1, 9000, 7):
        assert num_video_frames(len(clip.first_frames(frames, fps).samples), fps) == frames


def test_shortest_cuts_the_speech_where_the_video_ends(models):
    portrait = _register(_video_frames(), models, fps=20.0, loop="shortest")
    clip = load_audio(np.zeros(16000, np.float32), 16000)  # 1 s: longer than the 0.4-s video
    for fps in (20.0, 25.0, 30.0):
        cut = clip_for_source(clip, portrait, fps)
        assert num_video_frames(len(cut.samples), fps) == math.ceil(8 / 20 * fps)
    looping = _register(_video_frames(), models, fps=20.0)
    assert clip_for_source(clip, looping, 25.0) is clip


def test_a_long_video_decodes_into_a_disk_backed_array(tmp_path):
    frames = _video_frames()
    write_mp4(tmp_path / "v.mp4", frames, fps=30.0, encoding=VideoEncoding(crf=0))
    video = read_video(tmp_path / "v.mp4", max_frames=6)
    assert isinstance(video.frames, np.memmap) and video.frames.shape == (6, 96, 112, 3) and video.fps == 30.0
    assert np.abs(video.frames.astype(int) - frames[:6]).mean() < 3  # h264 at crf 0 in yuv420


@pytest.mark.parametrize("rotation, red_side", [(90, "bottom"), (-90, "top"), (180, "right")])
def test_a_phone_video_recorded_sideways_is_read_upright(tmp_path, rotation, red_side):
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as container:  # 64 wide, 32 tall, red on the left, shown turned by `rotation`
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(rotation)
        image = np.zeros((32, 64, 3), np.uint8)
        image[:, :32, 0] = 255
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")), *stream.encode(None)]:
            container.mux(packet)
    frame = read_video(path).frames[0].astype(int)
    assert frame.shape[:2] == ((32, 64) if rotation == 180 else (64, 32))
    half = {"bottom": frame[32:], "top": frame[:32], "right": frame[:, 32:]}[red_side]
    assert half[..., 0].mean() > 200 and frame[..., 0].mean() < 150  # the red half is where a player shows it
    assert video_rate(path) == 25.0


# --- the command line and the nodes ---------------------------------------------------------------------------


def _decoded(path: Path) -> tuple[list[np.ndarray], float, float]:
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        return frames, float(video.average_rate), float(audio.duration * audio.time_base)


def test_the_render_command_dubs_a_video_at_its_own_rate(small_release, tmp_path):
    source = tmp_path / "talk.mp4"
    write_mp4(source, _video_frames(15), fps=30.0, encoding=VideoEncoding(crf=0))  # 0.5 s, black at frames 3-4
    speech = ROOT / "assets" / "speech.wav"
    done = subprocess.run([sys.executable, "-m", "ditto_core", "render", "--portrait", str(source), "--audio",
                           str(speech), "--models", str(small_release), "--out", str(tmp_path / "dub.mp4"),
                           "--steps", "2", "--device", "cpu", "--loop", "shortest"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "15 source frames at 30 fps, loop shortest; 2 frame(s) without a face" in done.stderr
    frames, rate, audio_seconds = _decoded(tmp_path / "dub.mp4")
    assert rate == 30 and len(frames) == 15 and abs(audio_seconds - 0.5) < 0.05  # cut where the video ends
    for index in CUT:  # no face: the source frame, unchanged (up to the encoder)
        assert frames[index].max() <= 16
    assert min(frames[i].mean() for i in range(15) if i not in CUT) > 60


def test_the_render_command_gives_ceil_seconds_times_fps_frames(small_release, tmp_path):
    speech = ROOT / "assets" / "speech.wav"
    seconds = len(load_audio(speech).samples) / 16000
    done = subprocess.run([sys.executable, "-m", "ditto_core", "render", "--portrait",
                           str(ROOT / "assets" / "portrait.jpg"), "--audio", str(speech), "--models",
                           str(small_release), "--out", str(tmp_path / "a.mp4"), "--steps", "2", "--device", "cpu",
                           "--fps", "24", "--detection-threshold", "0.3"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    frames, rate, audio_seconds = _decoded(tmp_path / "a.mp4")
    assert len(frames) == math.ceil(seconds * 24) and rate == 24 and abs(audio_seconds - seconds) < 0.03


def test_nodes_dub_a_video_batch_at_the_source_rate(tmp_path, small_release):
    install(tmp_path)
    pack = load_pack()
    copy_release(small_release, tmp_path / "models" / "ditto")
    nodes = register(pack)
    (models,) = nodes["DittoLoadModels"].execute(release="ditto_pytorch", device="cpu")
    video = torch.from_numpy(_video_frames()).float() / 255
    (portrait,) = nodes["DittoRegisterPortrait"].execute(models, video, "video source", 0, "as released", 2.3,
                                                          -0.125, 0, 0.5, loop="shortest", source_fps=20.0)
    assert portrait.has_face.tolist() == [i not in CUT for i in range(8)] and portrait.fps == 20.0
    audio = {"waveform": torch.randn(1, 1, 16000) * 0.1, "sample_rate": 16000}  # 1 s, longer than the video
    features, _ = nodes["DittoEncodeAudio"].execute(models, audio)
    motion = nodes["DittoSampleMotion"].execute(models, portrait, features, "neutral", 1, 1, 10, 1).result[0]
    frames, cut_audio, rendered, crops, placement, fps = nodes["DittoRender"].execute(
        models, portrait, motion, True, "as released", 4, "fp32", audio)
    assert len(frames) == 8 and rendered.get_components().frame_rate == 20 == fps  # the video's length and rate
    assert cut_audio["waveform"].shape[-1] == 6400  # 0.4 s
    for index in CUT:
        torch.testing.assert_close(frames[index], torch.from_numpy(_video_frames()[index]).float() / 255)
    assert placement.has_face.tolist() == portrait.has_face.tolist() and len(crops) == 8
    pasted, masks = nodes["DittoPasteBack"].execute(crops, placement, 0.05)
    assert torch.equal(pasted, frames) and masks[list(CUT)].abs().max() == 0
