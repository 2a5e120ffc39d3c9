"""Feature-extraction speed: seconds of audio encoded per wall-clock second, ONNX vs PyTorch back-end.

    python bench/audio_features.py [--seconds 20] [--device cpu]

Builds a HuBERT-large with random weights and the architecture of facebook/hubert-large-ls960-ft (what the
release's encoder is), saves it as a transformers folder and as an ONNX export with the release's input/output
names, and times both back-ends through the same windowing code on the same synthetic audio. Random weights cost
the same as trained ones. Needs about 3 GB of disk in a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from load import machine_load  # noqa: E402  (bench/load.py)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ditto_core.audio import OnnxHubertEncoder, TorchHubertEncoder, extract_features, load_audio  # noqa: E402
from ditto_core.testing.fake_aux import export_hubert_onnx  # noqa: E402

HUBERT_LARGE = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
)


def build_models(folder: Path) -> Path:
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    model = HubertModel(HubertConfig(**HUBERT_LARGE)).eval()
    model.save_pretrained(folder)

    onnx_path = export_hubert_onnx(model, folder / "hubert.onnx")
    return onnx_path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    clip = load_audio(np.random.default_rng(0).standard_normal(int(args.seconds * 16000)).astype(np.float32) * 0.1, 16000)
    print(f"load: {machine_load()}")
    print(f"machine: {torch.get_num_threads()} torch threads, device {args.device}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        onnx_path = build_models(folder)
        results = {}
        for name, encoder in (
            ("onnx (onnxruntime, 1 window/run)", OnnxHubertEncoder(onnx_path, device=args.device)),
            ("hubert (transformers, 8 windows/batch)", TorchHubertEncoder(folder, device=args.device)),
        ):
            extract_features(load_audio(np.zeros(16000, np.float32), 16000), encoder)  # warm-up
            start = time.perf_counter()
            features = extract_features(clip, encoder)
            elapsed = time.perf_counter() - start
            results[name] = clip.duration_s / elapsed
            print(f"{name:42s} {features.num_frames} frames in {elapsed:6.2f} s → "
                  f"{results[name]:6.2f} audio s per wall s (real-time factor {elapsed / clip.duration_s:.3f})")
        onnx_speed, torch_speed = results.values()
        print(f"ratio hubert/onnx: {torch_speed / onnx_speed:.2f}")


if __name__ == "__main__":
    main()
