"""Rendering, video writing and the render command on a fake release."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from ditto_core.audio import load_audio
from ditto_core.keypoints import bins_to_degrees
from ditto_core.motion import Motion
from ditto_core.motion.drive import DriveOptions, driving_keypoints
from ditto_core.networks import load_networks
from ditto_core.portrait import load_face_models, register_portrait
from ditto_core.render import RenderOptions, render_frames
from ditto_core.video import pad_to_even, write_mp4

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(small_release):
    networks = load_networks(small_release)
    face_models = load_face_models(small_release)
    image = np.random.default_rng(0).integers(60, 200, (241, 300, 3), dtype=np.uint8)
    portrait = register_portrait(image, networks.appearance_extractor, networks.motion_extractor, face_models)
    motion = Motion(torch.from_numpy(np.random.default_rng(1).standard_normal((7, 265)).astype(np.float32) * 0.1))
    return networks, face_models, portrait, motion


def test_frames_match_motion_length_and_source_size(setup):
    networks, _, portrait, motion = setup
    frames = list(render_frames(networks, portrait, motion, RenderOptions(batch_size=3)))
    assert len(frames) == 7
    assert all(f.shape == (240, 300, 3) and f.dtype == np.uint8 for f in frames)  # height fitted to even


def test_batch_size_does_not_change_frames(setup):
    networks, _, portrait, motion = setup
    one = list(render_frames(networks, portrait, motion, RenderOptions(batch_size=1)))
    four = list(render_frames(networks, portrait, motion, RenderOptions(batch_size=4)))
    for a, b in zip(one, four):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_face_crops_equal_the_networks_called_frame_by_frame(setup):
    networks, _, portrait, motion = setup
    options = RenderOptions(batch_size=3, paste_back=False, precision="fp32")
    frames = list(render_frames(networks, portrait, motion, options))
    yaw = bins_to_degrees(portrait.keypoints["yaw"][:1]).item()
    pitch = bins_to_degrees(portrait.keypoints["pitch"][:1]).item()
    x_s = portrait.source_keypoints()
    for index in (0, 4, 6):  # first batch, a later batch, the last (short) batch
        _, x_d = driving_keypoints(portrait.keypoints, (yaw, pitch), motion, [index], [0], False)
        with torch.inference_mode():
            x_d = networks.stitch_network(x_s, x_d)
            face = networks.decoder(networks.warp_network(portrait.appearance, x_s, x_d))[0]
        expected = (face.clamp(0, 1) * 255).permute(1, 2, 0).numpy().astype(np.uint8)
        assert np.abs(frames[index].astype(int) - expected.astype(int)).max() <= 1


def test_without_paste_back_frames_are_face_crops(setup):
    networks, _, portrait, motion = setup
    frames = list(render_frames(networks, portrait, motion, RenderOptions(paste_back=False), start=2, stop=4))
    assert len(frames) == 2 and frames[0].shape == (512, 512, 3)


def test_stitching_changes_the_render(setup):
    networks, _, portrait, motion = setup
    on = next(render_frames(networks, portrait, motion, RenderOptions(paste_back=False)))
    off = next(render_frames(networks, portrait, motion, RenderOptions(paste_back=False, drive=DriveOptions(stitching=False))))
    assert np.abs(on.astype(int) - off.astype(int)).max() > 0


def test_check_can_stop_rendering_between_batches(setup):
    networks, _, portrait, motion = setup
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    frames = []
    with pytest.raises(KeyboardInterrupt):
        for frame in render_frames(networks, portrait, motion, RenderOptions(batch_size=2), check=check):
            frames.append(frame)
    assert len(frames) == 2


def test_video_source_frames_loop_ping_pong(setup):
    networks, face_models, _, _ = setup
    rng = np.random.default_rng(5)
    frames = [rng.integers(60, 200, (128, 128, 3), dtype=np.uint8) for _ in range(3)]
    video_portrait = register_portrait(frames, networks.appearance_extractor, networks.motion_extractor, face_models)
    motion = Motion(torch.zeros(6, 265))
    out = list(render_frames(networks, video_portrait, motion, RenderOptions(batch_size=6)))
    # frames 2 and 3 are both rendered over source frame 2 with the same motion, so they match
    np.testing.assert_array_equal(out[2], out[3])
    assert np.abs(out[0].astype(int) - out[2].astype(int)).max() > 0


def test_write_mp4_with_audio_and_odd_size(tmp_path):
    av = pytest.importorskip("av")
    frames = [np.full((33, 47, 3), i * 20, np.uint8) for i in range(10)]
    clip = load_audio(np.zeros(6400, np.float32), 16000)
    path = tmp_path / "out.mp4"
    assert write_mp4(path, iter(frames), 25.0, clip) == 10
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (48, 34)
        assert container.streams.audio[0].codec_context.name == "aac"
        decoded = list(container.decode(video=0))
    assert len(decoded) == 10
    assert pad_to_even(frames[0]).shape == (34, 48, 3)


@pytest.mark.parametrize("rate, channels, source", [(16000, 1, "array"), (44100, 2, "comfy"), (48000, 2, "file"),
                                                     (11111, 2, "array")])
def test_the_video_keeps_the_audio_as_it_came(tmp_path, rate, channels, source):
    """Rate and channels of the muxed AAC are the input's (an odd rate goes to 48 kHz), the sound itself is kept
    (a tone per channel comes back at its pitch), and it lasts as long as the input."""
    import soundfile

    av = pytest.importorskip("av")
    seconds, tones = 1.2, (440.0, 660.0)[:channels]
    t = np.arange(int(rate * seconds)) / rate
    waveform = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in tones]).astype(np.float32)
    if source == "file":
        soundfile.write(tmp_path / "in.wav", waveform.T, rate)
        clip = load_audio(tmp_path / "in.wav")
    elif source == "comfy":
        clip = load_audio({"waveform": torch.from_numpy(waveform)[None], "sample_rate": rate})
    else:
        clip = load_audio(waveform, rate)
    path = tmp_path / "out.mp4"
    write_mp4(path, [np.zeros((32, 32, 3), np.uint8)] * clip.num_frames, 25.0, clip)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert (stream.rate, stream.channels) == (rate if rate != 11111 else 48000, channels)
        assert stream.bit_rate is None or stream.bit_rate >= 40_000 * channels
        decoded = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    out_rate = stream.rate
    assert abs(decoded.shape[1] / out_rate - seconds) < 0.05  # AAC priming/padding only
    for channel, tone in enumerate(tones):
        middle = decoded[channel, out_rate // 4 : out_rate // 4 + out_rate // 2]
        spectrum = np.abs(np.fft.rfft(middle))
        assert abs(np.argmax(spectrum) * out_rate / len(middle) - tone) < 4


def test_write_mp4_leaves_nothing_behind_when_interrupted(tmp_path):
    def frames():
        yield np.zeros((32, 32, 3), np.uint8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_mp4(tmp_path / "out.mp4", frames())
    assert list(tmp_path.iterdir()) == []


def test_render_command_on_a_fake_release(small_release, tmp_path):
    av = pytest.importorskip("av")
    audio = tmp_path / "speech.wav"
    soundfile.write(audio, np.random.default_rng(0).standard_normal(16000 * 2 // 5) * 0.1, 16000)  # 0.4 s
    out, motion_file = tmp_path / "talk.mp4", tmp_path / "talk.safetensors"
    done = subprocess.run(
        [sys.executable, "-m", "ditto_core", "render", "--portrait", str(ROOT / "assets" / "portrait.jpg"),
         "--audio", str(audio), "--models", str(small_release), "--out", str(out), "--steps", "2",
         "--emotion", "0:neutral,0.2:happy+surprise", "--seed", "3", "--save-motion", str(motion_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}: 10 frames at 25 fps with audio" in done.stdout
    with av.open(str(out)) as container:
        assert len(list(container.decode(video=0))) == 10
        assert container.streams.video[0].codec_context.width == 512
    motion = Motion.load(motion_file)
    assert len(motion) == 10 and motion.metadata["seed"] == 3


def test_render_command_without_models_says_what_to_download(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ditto_core", "render", "--portrait", str(ROOT / "assets" / "portrait.jpg"),
         "--audio", str(ROOT / "assets" / "speech.wav"), "--models", str(tmp_path), "--out", str(tmp_path / "o.mp4")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1
    assert "hf download digital-avatar/ditto-talkinghead" in done.stderr
    assert f"MISSING {tmp_path / 'ditto_pytorch/models/lmdm_v0.4_hubert.pth'}" in done.stderr
    assert f"python -m ditto_core download --models {tmp_path}" in done.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_streamed_rendering_retains_at_most_one_batch(setup):
    """The renderer yields frames as it goes: however long the motion, it keeps no more than one batch alive."""
    import gc
    import weakref

    networks, _, portrait, _ = setup
    motion = Motion(torch.zeros(23, 265))
    alive, most_alive = [], 0
    for frame in render_frames(networks, portrait, motion, RenderOptions(batch_size=3)):
        alive.append(weakref.ref(frame))
        del frame
        gc.collect()
        most_alive = max(most_alive, sum(ref() is not None for ref in alive))
    assert len(alive) == 23
    assert most_alive <= 3


def test_written_files_get_ordinary_permissions(tmp_path):
    import os

    from ditto_core.files import readable_mode

    video = tmp_path / "v.mp4"
    write_mp4(video, iter([np.zeros((16, 16, 3), np.uint8)]))
    motion = Motion(torch.zeros(2, 265)).save(tmp_path / "m.safetensors")
    for path in (video, motion):
        assert os.stat(path).st_mode & 0o777 == readable_mode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "v.mp4"]  # no temporary files left
