"""Command line.

    python -m ditto_core check --models DIR [--run]
    python -m ditto_core download --models DIR [--revision REV]
    python -m ditto_core features --audio FILE --models DIR --out FEATS.npy [--backend onnx|hubert]
    python -m ditto_core render --portrait IMG --audio WAV --out OUT.mp4 [--models DIR] [--emotion E] [--seed N]
    python -m ditto_core config --models DIR [--online] [--json]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

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


class Progress:
    def __init__(self, total: int, label: str):
        self.total, self.label, self.start = total, label, time.perf_counter()

    def __call__(self, done: int) -> None:
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        end = "\n" if done >= self.total else ""
        print(f"\r{self.label} {done}/{self.total} frames ({rate:.2f} frames/s)", end=end, file=sys.stderr, flush=True)


def render(args) -> int:
    """Portrait + speech → talking-head mp4 with the speech muxed in, set up as the release's cfg says unless
    options say otherwise."""
    from .config_pickle import ConfigFileError
    from .motion import ConditionError, SamplerOptions
    from .motion.conditions import parse_emotion
    from .pipeline import DittoPipeline
    from .portrait import FaceModelError, NoFaceError, PortraitInputError
    from .release import CONFIG_FILES
    from .stream import speech_to_video

    status = check_release(args.models)
    not_needed = set(CONFIG_FILES) if args.code_defaults else {"online_config"}
    if args.backend == "hubert":
        not_needed.add("hubert")
    if set(status.missing) - not_needed:
        print(status.report(), file=sys.stderr)
        print("error: the Ditto model files above are missing; download them, then run this command again.",
              file=sys.stderr)
        return 1
    try:
        import cv2

        image = cv2.imread(str(args.portrait), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise PortraitInputError(f"cannot read the portrait image {args.portrait}")
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        emotion = parse_emotion(args.emotion) if args.emotion is not None else None
        pipeline = DittoPipeline.load(args.models, args.device, args.backend, args.hubert_dir,
                                      code_defaults=args.code_defaults)
        print(f"settings: {pipeline.config.name}", file=sys.stderr)
        registration = pipeline.registration_options(max_size=args.max_size, face_index=args.face_index)
        portrait = pipeline.register(image, registration)
        clip = load_audio(args.audio)
        print(f"{clip.name}: {clip.duration_s:.2f} s → {clip.num_frames} frames", file=sys.stderr)
        sampler = SamplerOptions(steps=args.steps, overlap=args.overlap, smoothing=args.smoothing, seed=args.seed)
        options = pipeline.render_options(stitching=False if args.no_stitching else None,
                                          batch_size=args.batch_size, paste_back=not args.no_paste_back)
        start = time.perf_counter()
        motion = speech_to_video(args.out, pipeline, portrait, clip, emotion, sampler, options,
                                 on_frame=Progress(clip.num_frames, "rendering"))
        elapsed = time.perf_counter() - start
        if args.save_motion:
            motion.save(args.save_motion)
    except (AudioInputError, EncoderError, CheckpointError, ConfigFileError, FaceModelError, NoFaceError,
            PortraitInputError, ConditionError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {len(motion)} frames at {motion.fps:g} fps with audio, {len(motion) / elapsed:.2f} "
          f"frames/s ({motion.metadata['steps']} steps, overlap {motion.metadata['overlap']})")
    return 0


def show_config(models: str, online: bool, as_json: bool) -> int:
    """Print what the release's cfg configures: keys, scalar values, array shapes."""
    import json

    from .config_pickle import ConfigFileError
    from .release import release_path
    from .release_config import describe, load_release_config, missing_config_message

    name = "online_config" if online else "config"
    path = release_path(models, name)
    try:
        if not path.is_file():
            raise ConfigFileError(missing_config_message(models, name))
        described = describe(load_release_config(path))
    except ConfigFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(described, indent=2))
        return 0
    print(f"{described['file']}\nsha256 {described['sha256']}")
    fallbacks = set(described["code_defaults_used"])
    for section in ("audio2motion_cfg", "default_kwargs"):
        print(f"{section}:")
        for key, value in described[section].items():
            note = "  (not in the file: the reference code's default)" if section == "default_kwargs" and key in fallbacks else ""
            print(f"  {key}: {json.dumps(value)}{note}")
    if described["ignored"]:
        print(f"without effect here: {', '.join(described['ignored'])}")
    return 0


def download(models: str, revision: str | None) -> int:
    """Opt-in: fetch the release into ``models``, pinned to one commit, every file hash-checked."""
    from .download import DownloadError, download_release

    shown = {}

    def on_bytes(path: str, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if shown.get(path) != percent:
            shown[path] = percent
            print(f"\r{path}: {percent:3d}% of {total / 1e6:.1f} MB", end="" if percent < 100 else "\n",
                  file=sys.stderr, flush=True)

    try:
        report = download_release(models, revision, progress=on_bytes)
    except (DownloadError, OSError) as exc:  # OSError: the models folder cannot be written (permissions, disk)
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    print(f"{report.root}: commit {report.commit}; {len(report.downloaded)} downloaded, {len(report.kept)} already "
          f"verified")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ditto_core", description="ComfyUI-Ditto core tools")
    commands = parser.add_subparsers(dest="command", required=True)
    check_cmd = commands.add_parser("check", help="report which release files are present and load the networks")
    check_cmd.add_argument("--models", required=True, help="folder holding ditto_pytorch/ (the Hugging Face repo)")
    check_cmd.add_argument("--run", action="store_true", help="also run each network once on random input")
    check_cmd.add_argument("--device", default="cpu")
    down_cmd = commands.add_parser("download", help="download the release from Hugging Face, hash-checked")
    down_cmd.add_argument("--models", required=True, help="folder to hold ditto_pytorch/, e.g. ComfyUI/models/ditto")
    down_cmd.add_argument("--revision", help="branch, tag or commit (default: the recorded commit, else main)")
    feat_cmd = commands.add_parser("features", help="encode speech to Ditto's 25-fps HuBERT features")
    feat_cmd.add_argument("--audio", required=True, help="wav/flac/ogg (mp3/m4a/mp4 with PyAV)")
    feat_cmd.add_argument("--models", help="release folder (for the onnx back-end)")
    feat_cmd.add_argument("--out", required=True, help="output .npy file")
    feat_cmd.add_argument("--backend", choices=BACKENDS, default="onnx")
    feat_cmd.add_argument("--hubert-dir", help="local facebook/hubert-large-ls960-ft folder (hubert back-end)")
    feat_cmd.add_argument("--download-hubert", action="store_true", help="download HuBERT into --hubert-dir first")
    feat_cmd.add_argument("--device", default="cpu")
    render_cmd = commands.add_parser("render", help="portrait + speech → talking-head mp4")
    render_cmd.add_argument("--portrait", required=True, help="image file with one face")
    render_cmd.add_argument("--audio", required=True, help="speech: wav/flac/ogg, mp3/m4a/mp4 with PyAV")
    render_cmd.add_argument("--out", required=True, help="output .mp4")
    render_cmd.add_argument("--models", default="models/ditto", help="folder holding ditto_pytorch/ (default: %(default)s)")
    render_cmd.add_argument("--emotion", default=None,
                            help="neutral|happy|angry|…, a mix happy+surprise, or a timeline 0:neutral,2.5:happy "
                                 "(default: the release cfg's emotion sequence)")
    render_cmd.add_argument("--seed", type=int, default=0, help="one seed, one video: motion noise and blinks")
    render_cmd.add_argument("--steps", type=int, help="diffusion steps per window (default: the release cfg's)")
    render_cmd.add_argument("--overlap", type=int, help="frames shared by motion windows (default: the release cfg's)")
    render_cmd.add_argument("--smoothing", type=int, help="pose smoothing window in frames (default: the release cfg's)")
    render_cmd.add_argument("--code-defaults", action="store_true",
                            help="ignore ditto_cfg and use the reference code's built-in settings (not what official "
                                 "Ditto does)")
    render_cmd.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                            help="cpu or cuda (default: %(default)s)")
    render_cmd.add_argument("--backend", choices=BACKENDS, default="onnx", help="audio encoder")
    render_cmd.add_argument("--hubert-dir", help="local HuBERT folder for --backend hubert")
    render_cmd.add_argument("--batch-size", type=int, default=4, help="frames rendered together (default %(default)s)")
    render_cmd.add_argument("--max-size", type=int, help="longest side of the output video (default: the release "
                                                         "cfg's, 1920)")
    render_cmd.add_argument("--face-index", type=int, default=0, help="which face, 0 = largest")
    render_cmd.add_argument("--no-paste-back", action="store_true", help="output the 512x512 face crop only")
    render_cmd.add_argument("--no-stitching", action="store_true",
                            help="skip the stitching network that keeps the face aligned with the shoulders")
    render_cmd.add_argument("--save-motion", help="also save the sampled motion (.safetensors)")
    config_cmd = commands.add_parser("config", help="show what the release's configuration (ditto_cfg) sets")
    config_cmd.add_argument("--models", required=True, help="folder holding ditto_pytorch/ and ditto_cfg/")
    config_cmd.add_argument("--online", action="store_true", help="the online cfg instead of the offline one")
    config_cmd.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if args.command == "render":
        return render(args)
    if args.command == "check":
        return check(args.models, args.run, args.device)
    if args.command == "download":
        return download(args.models, args.revision)
    if args.command == "config":
        return show_config(args.models, args.online, args.json)
    return features(args.audio, args.models, args.out, args.backend, args.hubert_dir, args.download_hubert, args.device)


if __name__ == "__main__":
    sys.exit(main())
