"""Command line.

    python -m ditto_core check --models DIR [--run]
    python -m ditto_core features --audio FILE --models DIR --out FEATS.npy [--backend onnx|hubert]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import numpy as np

from .audio import AudioInputError, EncoderError, extract_features, load_audio
from .audio.encoders import BACKENDS, download_hubert, load_encoder
from .models import NETWORKS, CheckpointError, load_network
from .models.examples import example_inputs
from .release import check_release


def _shapes(output: object) -> str:
    outputs = output if isinstance(output, tuple) else (output,)
    return ", ".join("x".join(map(str, o.shape)) for o in outputs)


def check(models: str, run: bool, device: str) -> int:
    """Report the release files under ``models``, load every network present and optionally run it once."""
    status = check_release(models)
    print(status.report())
    failures = 0
    for kind in NETWORKS:
        path = status.present.get(kind)
        if path is None:
            failures += 1
            continue
        try:
            net = load_network(kind, path, device=device)
        except CheckpointError as exc:
            print(f"FAILED {kind}: {exc}")
            failures += 1
            continue
        params = sum(p.numel() for p in net.parameters())
        line = f"loaded {kind}: {params / 1e6:.3f} M parameters"
        if run:
            inputs = example_inputs(kind, net)
            start = time.perf_counter()
            with torch.inference_mode():
                output = net(*inputs)
            line += f"; forward on random input → {_shapes(output)} in {time.perf_counter() - start:.2f} s"
        print(line)
    if failures:
        print(f"{failures} of {len(NETWORKS)} networks are missing or unusable.")
    return 1 if failures else 0


def features(audio: str, models: str | None, out: str, backend: str, hubert_dir: str | None,
             download: bool, device: str) -> int:
    """Write the 25-fps HuBERT features of ``audio`` to ``out`` (.npy, [frames, 1024] float32)."""
    try:
        clip = load_audio(audio)
        if backend == "hubert" and download:
            download_hubert(hubert_dir)
        encoder = load_encoder(backend, release_root=models, hubert_dir=hubert_dir, device=device)
    except (AudioInputError, EncoderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    result = extract_features(clip, encoder, backend=backend)
    elapsed = time.perf_counter() - start
    np.save(out, result.frames.numpy())
    print(
        f"{clip.name}: {clip.duration_s:.2f} s of audio (read at {clip.source_sample_rate} Hz) → "
        f"{result.num_frames} frames x {result.frames.shape[1]} features at 25 fps, {backend} back-end, "
        f"{clip.duration_s / elapsed:.1f}x real time; wrote {out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ditto_core", description="ComfyUI-Ditto core tools")
    commands = parser.add_subparsers(dest="command", required=True)
    check_cmd = commands.add_parser("check", help="report which release files are present and load the networks")
    check_cmd.add_argument("--models", required=True, help="folder holding ditto_pytorch/ (the Hugging Face repo)")
    check_cmd.add_argument("--run", action="store_true", help="also run each network once on random input")
    check_cmd.add_argument("--device", default="cpu")
    feat_cmd = commands.add_parser("features", help="encode speech to Ditto's 25-fps HuBERT features")
    feat_cmd.add_argument("--audio", required=True, help="wav/flac/ogg (mp3/m4a/mp4 with PyAV)")
    feat_cmd.add_argument("--models", help="release folder (for the onnx back-end)")
    feat_cmd.add_argument("--out", required=True, help="output .npy file")
    feat_cmd.add_argument("--backend", choices=BACKENDS, default="onnx")
    feat_cmd.add_argument("--hubert-dir", help="local facebook/hubert-large-ls960-ft folder (hubert back-end)")
    feat_cmd.add_argument("--download-hubert", action="store_true", help="download HuBERT into --hubert-dir first")
    feat_cmd.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.models, args.run, args.device)
    return features(args.audio, args.models, args.out, args.backend, args.hubert_dir, args.download_hubert, args.device)


if __name__ == "__main__":
    sys.exit(main())
