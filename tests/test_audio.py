"""Audio input, HuBERT windowing, streaming and both encoder back-ends."""

import math

import numpy as np
import pytest
import soundfile
import torch

from ditto_core.audio import (
    AudioInputError,
    EncoderError,
    OnnxHubertEncoder,
    StreamingFeatureExtractor,
    TorchHubertEncoder,
    extract_features,
    load_audio,
)
from ditto_core.audio.encoders import HUBERT_REPO, HUBERT_REVISION, download_hubert
from ditto_core.audio.features import stream_features, window_start
from ditto_core.release import AUX_FILES
from ditto_core.testing.fake_aux import export_hubert_onnx, write_fake_hubert_onnx


@pytest.fixture(scope="module")
def fake_hubert(small_release):
    return OnnxHubertEncoder(small_release / AUX_FILES["hubert"].path)


@pytest.fixture(scope="module")
def probe_hubert(tmp_path_factory):
    """An ONNX "HuBERT" whose output channel c of row r is the sample at 320·r + (c mod 400)."""
    kernel = np.zeros((1024, 400), np.float32)
    kernel[np.arange(1024), np.arange(1024) % 400] = 1
    return OnnxHubertEncoder(write_fake_hubert_onnx(tmp_path_factory.mktemp("probe") / "probe.onnx", kernel))


def _clip(num_samples, seed=0):
    return load_audio(np.random.default_rng(seed).standard_normal(num_samples).astype(np.float32) * 0.1, 16000)


@pytest.mark.parametrize("seconds", [0.04, 0.05, 0.1, 0.28, 0.3, 1.0, 3.21, 7.77, 20.0, 60.0])
def test_frame_count_is_ceil_of_seconds_times_25(fake_hubert, seconds):
    num_samples = round(seconds * 16000)
    features = extract_features(_clip(num_samples), fake_hubert)
    assert features.frames.shape == (math.ceil(num_samples / 16000 * 25), 1024)
    assert features.frames.dtype == torch.float32
    assert features.duration_s == pytest.approx(seconds, abs=1e-4)


def test_ten_ms_gives_one_frame(fake_hubert):
    assert extract_features(_clip(160), fake_hubert).num_frames == 1


def test_windowing_matches_hand_computed_sample_indices(probe_hubert):
    num_samples = 16000 * 2 + 333
    audio = np.arange(1, num_samples + 1, dtype=np.float32)  # sample j holds j + 1, so values name indices
    frames = extract_features(load_audio(audio, 16000), probe_hubert).frames.numpy()
    n_frames = math.ceil(num_samples / 16000 * 25)
    assert frames.shape[0] == n_frames

    def padded(index):  # 2000 zeros in front, zeros past the end
        j = index - 2000
        return float(j + 1) if 0 <= j < num_samples else 0.0

    channels = np.arange(1024) % 400
    for n in [0, 1, 4, 5, 9, 23, n_frames - 1]:
        start = int((n // 5 * 5) * 0.04 * 16000)
        row = 6 + 2 * (n % 5)
        expected = [(padded(start + 320 * row + c) + padded(start + 320 * (row + 1) + c)) / 2 for c in channels]
        np.testing.assert_allclose(frames[n], expected, rtol=0, atol=1e-3)
        # in audio coordinates frame n averages the windows starting at 640n − 80 and 640n + 240
        assert frames[n][0] == pytest.approx((padded(640 * n - 80 + 2000) + padded(640 * n + 240 + 2000)) / 2)


def test_window_start_keeps_the_reference_float_expression():
    assert window_start(5) == 3200
    assert window_start(1615) == 640 * 1615 - 1  # 1615·0.04·16000 evaluates just below the integer


@pytest.mark.parametrize("chunk_sizes", [[1] * 50 + [10_000], [100], [6480], [3199, 3201], [10_007], [160_000]])
def test_streaming_equals_offline(fake_hubert, chunk_sizes):
    clip = _clip(16000 * 4 + 77, seed=3)
    offline = extract_features(clip, fake_hubert).frames.numpy()
    chunks, position, i = [], 0, 0
    while position < len(clip.samples):
        size = chunk_sizes[i % len(chunk_sizes)]
        chunks.append(clip.samples[position : position + size])
        position += size
        i += 1
    np.testing.assert_array_equal(stream_features(fake_hubert, chunks), offline)


def test_streaming_emits_frames_once_their_look_ahead_arrives(fake_hubert):
    extractor = StreamingFeatureExtractor(fake_hubert)
    assert extractor.push(np.zeros(4479, np.float32)).shape[0] == 0  # frames 0-4 need 4,480 samples
    assert extractor.push(np.zeros(1, np.float32)).shape[0] == 5
    assert extractor.push(np.zeros(3199, np.float32)).shape[0] == 0
    assert extractor.push(np.zeros(1, np.float32)).shape[0] == 5  # every 3,200 samples after that
    rest = extractor.finish()
    assert 10 + rest.shape[0] == math.ceil(7680 / 16000 * 25)
    with pytest.raises(RuntimeError, match="finished"):
        extractor.push(np.zeros(10, np.float32))


def test_silence_is_valid_and_finite(fake_hubert):
    features = extract_features(load_audio(np.zeros(16000, np.float32), 16000), fake_hubert)
    assert features.num_frames == 25 and torch.isfinite(features.frames).all()


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000])
@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_stereo_resampling_keeps_duration_and_pitch(rate, dtype):
    seconds, tone = 1.5, 440.0
    t = np.arange(int(rate * seconds)) / rate
    stereo = np.stack([np.sin(2 * np.pi * tone * t), np.sin(2 * np.pi * tone * t)]) * 0.5
    data = (stereo * 32767).astype(np.int16) if dtype == "int16" else stereo.astype(np.float32)
    clip = load_audio(data, rate)
    assert clip.source_sample_rate == rate
    assert abs(len(clip.samples) - seconds * 16000) <= 1
    assert clip.samples.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(clip.samples))
    assert np.argmax(spectrum) * 16000 / len(clip.samples) == pytest.approx(tone, abs=1.0)
    assert np.abs(clip.samples).max() == pytest.approx(0.5, abs=0.02)


def test_channels_are_averaged():
    left, right = np.full(1600, 0.2, np.float32), np.full(1600, -0.6, np.float32)
    six = np.stack([left, right, left, right, left, right])
    np.testing.assert_allclose(load_audio(six, 16000).samples, -0.2, atol=1e-6)


def test_comfyui_audio_dict():
    waveform = torch.rand(1, 2, 32000) - 0.5
    clip = load_audio({"waveform": waveform, "sample_rate": 32000})
    assert len(clip.samples) == 16000


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_24"), ("OGG", "VORBIS")])
def test_audio_files(tmp_path, fmt, subtype):
    path = tmp_path / f"speech.{fmt.lower()}"
    t = np.arange(22050) / 22050
    soundfile.write(path, np.stack([np.sin(2 * np.pi * 220 * t)] * 2, axis=1) * 0.3, 22050, format=fmt, subtype=subtype)
    clip = load_audio(path)
    assert clip.name == path.name and clip.source_sample_rate == 22050
    assert abs(clip.duration_s - 1.0) < 0.01


def test_m4a_through_pyav(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "speech.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        t = np.arange(44100) / 44100
        samples = (np.sin(2 * np.pi * 330 * t) * 0.3).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    clip = load_audio(path)
    assert clip.source_sample_rate == 44100
    assert abs(clip.duration_s - 1.0) < 0.1


@pytest.mark.parametrize(
    "source, rate, message",
    [
        (np.zeros(0, np.float32), 16000, "is empty"),
        (np.full(100, np.nan, np.float32), 16000, "100 non-finite samples"),
        (np.array([0.0, np.inf], np.float32), 16000, "1 non-finite samples"),
        (np.zeros(100, np.float32), None, "needs its sample_rate"),
        ({"waveform": torch.zeros(2, 1, 100), "sample_rate": 16000}, None, "batch of 2 clips"),
        ({"samples": np.zeros(3)}, None, "'waveform' and 'sample_rate'"),
        ("/nonexistent/speech.wav", None, "audio file not found"),
    ],
)
def test_bad_audio_is_rejected_clearly(source, rate, message):
    with pytest.raises(AudioInputError, match=message):
        load_audio(source, rate)


def test_undecodable_file(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x00\x00not really audio")
    with pytest.raises(AudioInputError, match="broken.wav"):
        load_audio(path)


def test_missing_or_broken_onnx(tmp_path):
    with pytest.raises(EncoderError, match="hubert_streaming_fix_kv.onnx"):
        OnnxHubertEncoder(tmp_path / "absent.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    with pytest.raises(EncoderError, match="damaged or incomplete"):
        OnnxHubertEncoder(broken)


@pytest.fixture(scope="module")
def tiny_hubert(tmp_path_factory):
    """A small random HuBERT (1024-wide, one layer) saved as a transformers folder, plus its ONNX export."""
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    config = HubertConfig(
        hidden_size=1024,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    model = HubertModel(config).eval()
    folder = tmp_path_factory.mktemp("tiny_hubert")
    model.save_pretrained(folder)

    onnx_path = export_hubert_onnx(model, folder / "hubert.onnx")
    return folder, onnx_path


def test_torch_backend_shapes_and_onnx_relation(tiny_hubert):
    folder, onnx_path = tiny_hubert
    torch_encoder = TorchHubertEncoder(folder)
    rows = torch_encoder(np.random.default_rng(0).standard_normal((3, 6480)).astype(np.float32))
    assert rows.shape == (3, 20, 1024)
    clip = _clip(16000 + 500, seed=5)
    from_torch = extract_features(clip, torch_encoder, backend="hubert").frames
    from_onnx = extract_features(clip, OnnxHubertEncoder(onnx_path)).frames
    assert from_torch.shape == (math.ceil(16500 / 640), 1024)
    # the ONNX path equals HuBERT's last hidden state on raw samples when the graph is a plain export
    torch.testing.assert_close(from_onnx, from_torch, rtol=1e-4, atol=1e-4)
    layer0 = extract_features(clip, TorchHubertEncoder(folder, layer=0)).frames
    assert (layer0 - from_torch).abs().max() > 1e-3


def test_torch_backend_without_model_says_how_to_get_it(tmp_path):
    with pytest.raises(EncoderError, match=f"--revision {HUBERT_REVISION}"):
        TorchHubertEncoder(tmp_path)


def test_hubert_download_is_pinned(monkeypatch, tmp_path):
    import huggingface_hub

    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, **kw: calls.append((repo, kw)))
    assert download_hubert(tmp_path / "hubert") == tmp_path / "hubert"
    (repo, kwargs), = calls
    assert repo == HUBERT_REPO and kwargs["revision"] == HUBERT_REVISION
    assert kwargs["local_dir"] == str(tmp_path / "hubert")


def test_features_command(small_release, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    audio = tmp_path / "speech.wav"
    soundfile.write(audio, np.random.default_rng(0).standard_normal((44100 * 2, 2)) * 0.1, 44100)
    out = tmp_path / "feats.npy"
    done = subprocess.run(
        [sys.executable, "-m", "ditto_core", "features", "--audio", str(audio), "--models", str(small_release),
         "--out", str(out)],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "2.00 s of audio (read at 44100 Hz) → 50 frames x 1024 features" in done.stdout
    feats = np.load(out)
    assert feats.shape == (50, 1024) and feats.dtype == np.float32
    expected = extract_features(load_audio(audio), OnnxHubertEncoder(small_release / AUX_FILES["hubert"].path))
    np.testing.assert_array_equal(feats, expected.frames.numpy())


def test_onnx_sessions_take_cuda_where_onnxruntime_has_it(monkeypatch):
    import onnxruntime

    from ditto_core.onnx_sessions import onnx_providers

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert onnx_providers("cuda:1") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])  # plain onnxruntime
    assert onnx_providers("cuda") == ["CPUExecutionProvider"]
