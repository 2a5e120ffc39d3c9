"""Command line.

    python -m ditto_core render --portrait IMG --audio WAV --out OUT.mp4 [--models DIR] [--emotion E] [--seed N]
    python -m ditto_core download --models DIR [--revision REV]
    python -m ditto_core check --models DIR [--run]
    python -m ditto_core config --models DIR [--online] [--json]
    python -m ditto_core features --audio FILE --models DIR --out FEATS.npy [--backend onnx|hubert]
    python -m ditto_core live --models DIR --portrait IMG [--host 127.0.0.1] [--port 8765] [--token T]
    python -m ditto_core batch JOBS.csv --models DIR --out OUT_DIR [--workers N] [--ray ADDRESS|auto|local]
                               [--retries N] [--stall-timeout SECONDS]

Every output path is checked, and its folder made, before any work starts; Ctrl-C stops with one line and exit
code 130, leaving no partial file.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

INTERRUPTED = 130


class UsageError(ValueError):
    """A command-line value that cannot be used, said before any work is done."""


def output_path(value: str, suffix: str, what: str) -> Path:
    """``value`` as an output file with ``suffix`` (added when it has none; another one is refused), its folder
    created now so that finished work is never lost to a missing folder."""
    path = Path(value).expanduser()
    if not path.suffix:
        path = path.with_suffix(suffix)
        print(f"note: {what} has no extension; writing {path}", file=sys.stderr)
    elif path.suffix.lower() != suffix:
        raise UsageError(f"{what} must be a {suffix} file, got {value}")
    if path.is_dir():
        raise UsageError(f"{what} {value} is a folder; give a file name ending in {suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder for {what} {path}: {exc.strerror or exc}") from exc
    return path


def _shapes(output: object) -> str:
    outputs = output if isinstance(output, tuple) else (output,)
    return ", ".join("x".join(map(str, o.shape)) for o in outputs)


def check(args) -> int:
    """Report the release files under ``--models``, load every network present and optionally run it once."""
    import torch

    from .models import NETWORKS, CheckpointError, load_network
    from .models.examples import example_inputs
    from .release import check_release

    status = check_release(args.models)
    print(status.report())
    unusable = 0
    for kind in NETWORKS:
        path = status.present.get(kind)
        if path is None:
            continue
        try:
            net = load_network(kind, path, device=args.device)
        except CheckpointError as exc:
            print(f"FAILED {kind}: {exc}")
            unusable += 1
            continue
        params = sum(p.numel() for p in net.parameters())
        line = f"loaded {kind}: {params / 1e6:.3f} M parameters"
        if args.run:
            inputs = example_inputs(kind, net)
            start = time.perf_counter()
            with torch.inference_mode():
                output = net(*inputs)
            line += f"; forward on random input → {_shapes(output)} in {time.perf_counter() - start:.2f} s"
        print(line)
    if status.missing or unusable:
        missing_networks = sum(kind in status.missing for kind in NETWORKS)
        print(f"{len(status.missing)} of {len(status.present) + len(status.missing)} release files are missing "
              f"({missing_networks} of {len(NETWORKS)} networks); {unusable} present network file(s) unusable.")
    return 1 if status.missing or unusable else 0


def features(args) -> int:
    """Write the 25-fps HuBERT features of the audio (.npy, [frames, 1024] float32)."""
    import io

    import numpy as np

    from .audio import extract_features, load_audio
    from .audio.encoders import download_hubert, load_encoder
    from .files import atomic_write_bytes

    out = output_path(args.out, ".npy", "--out")
    clip = load_audio(args.audio)
    if args.backend == "hubert" and args.download_hubert:
        download_hubert(args.hubert_dir)
    encoder = load_encoder(args.backend, release_root=args.models, hubert_dir=args.hubert_dir, device=args.device)
    start = time.perf_counter()
    result = extract_features(clip, encoder, backend=args.backend)
    elapsed = time.perf_counter() - start
    buffer = io.BytesIO()
    np.save(buffer, result.frames.numpy())
    atomic_write_bytes(out, buffer.getvalue())
    print(
        f"{clip.name}: {clip.duration_s:.2f} s of audio (read at {clip.source_sample_rate} Hz) → "
        f"{result.num_frames} frames x {result.frames.shape[1]} features at 25 fps, {args.backend} back-end, "
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
    from .audio import load_audio
    from .audio.clip import FPS, num_video_frames
    from .motion import SamplerOptions
    from .motion.conditions import parse_emotion
    from .pipeline import DittoPipeline
    from .portrait.images import load_image
    from .release import check_release
    from .stream import check_fps, clip_for_source, default_fps, speech_to_video
    from .video import VIDEO_SUFFIXES, VideoEncoding, video_rate

    encoding = VideoEncoding(args.crf, args.encoder, args.preset)  # a bad choice is told before anything loads
    sampler = SamplerOptions(steps=args.steps, overlap=args.overlap, smoothing=args.smoothing, seed=args.seed)
    if args.fps is not None:
        check_fps(args.fps)
    out = output_path(args.out, ".mp4", "--out")
    motion_path = output_path(args.save_motion, ".safetensors", "--save-motion") if args.save_motion else None
    emotion = parse_emotion(args.emotion) if args.emotion is not None else None
    status = check_release(args.models)
    if status.missing_needed(args.code_defaults, args.backend):
        print(status.report(), file=sys.stderr)
        print("error: the Ditto model files above are missing; download them, then run this command again.",
              file=sys.stderr)
        return 1
    is_video = Path(args.portrait).suffix.lower() in VIDEO_SUFFIXES
    source_rate = video_rate(args.portrait) if is_video else None
    image = None if is_video else load_image(args.portrait)  # an unreadable file is told before the models load
    fps = args.fps or default_fps(source_rate, FPS)  # a video's rate out of range is told now too
    clip = load_audio(args.audio)
    pipeline = DittoPipeline.load(args.models, args.device, args.backend, args.hubert_dir,
                                  code_defaults=args.code_defaults)
    print(f"settings: {pipeline.config.name}", file=sys.stderr)
    registration = pipeline.registration_options(max_size=args.max_size, face_index=args.face_index,
                                                 detection_threshold=args.detection_threshold, loop=args.loop)
    if source_rate:  # a video's frames after the speech ends are never shown, whatever the loop: they are not read
        shown = math.ceil(clip.duration_s * source_rate) + 1
        cfg_limit = registration.max_frames  # the cfg's template_n_frames, when it sets one
        registration = replace(registration, max_frames=min(shown, cfg_limit) if cfg_limit > 0 else shown)
    portrait = (pipeline.register_file(args.portrait, registration) if is_video
                else pipeline.register(image, registration))
    if portrait.is_video:
        print(f"{Path(args.portrait).name}: {portrait.video_summary()}", file=sys.stderr)
        clip = clip_for_source(clip, portrait, fps)
    print(f"{clip.name}: {clip.duration_s:.2f} s → {num_video_frames(len(clip.samples), fps)} frames at {fps:g} fps",
          file=sys.stderr)
    options = pipeline.render_options(stitching=False if args.no_stitching else None, batch_size=args.batch_size,
                                      paste_back=not args.no_paste_back, precision=args.precision)
    start = time.perf_counter()
    motion = speech_to_video(out, pipeline, portrait, clip, emotion, sampler, options, encoding, fps=fps,
                             on_frame=Progress(num_video_frames(len(clip.samples), fps), "rendering"))
    elapsed = time.perf_counter() - start
    if motion_path is not None:
        motion.save(motion_path)
    print(f"wrote {out}: {len(motion)} frames at {motion.fps:g} fps with audio, {len(motion) / elapsed:.2f} "
          f"frames/s ({motion.metadata['steps']} steps, overlap {motion.metadata['overlap']})"
          + (f"; motion in {motion_path}" if motion_path else ""))
    return 0


def batch(args) -> int:
    """Render every job of a manifest (CSV) into a folder, on this machine's workers or a Ray cluster; a re-run
    renders only what is missing, failed or changed."""
    from .batch import run_batch

    summary = run_batch(args.jobs, args.models, args.out, workers=args.workers, ray_address=args.ray,
                        save_motion=args.save_motion, retries=args.retries, stall_timeout=args.stall_timeout)
    return 0 if summary.all_good else 1


def show_config(args) -> int:
    """Print what the release's cfg configures: keys, scalar values, array shapes."""
    import json

    from .config_pickle import ConfigFileError
    from .release import release_path
    from .release_config import describe, load_release_config, missing_config_message

    name = "online_config" if args.online else "config"
    path = release_path(args.models, name)
    if not path.is_file():
        raise ConfigFileError(missing_config_message(args.models, name))
    described = describe(load_release_config(path))
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    print(f"{described['file']}\nsha256 {described['sha256']}")
    fallbacks = set(described["code_defaults_used"])
    for section in ("audio2motion_cfg", "default_kwargs"):
        print(f"{section}:")
        for key, value in described[section].items():
            note = "  (not in the file: the reference code's default)" if key in fallbacks else ""
            print(f"  {key}: {json.dumps(value)}{note}")
    if described["ignored"]:
        print(f"without effect here: {', '.join(described['ignored'])}")
    return 0


def download(args) -> int:
    """Opt-in: fetch the release into ``--models``, pinned to one commit, every file hash-checked."""
    from .download import download_release

    shown = {}

    def on_bytes(path: str, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if shown.get(path) != percent:
            shown[path] = percent
            print(f"\r{path}: {percent:3d}% of {total / 1e6:.1f} MB", end="" if percent < 100 else "\n",
                  file=sys.stderr, flush=True)

    report = download_release(args.models, args.revision, progress=on_bytes)
    print(f"{report.root}: commit {report.commit}; {len(report.downloaded)} downloaded, {len(report.kept)} already "
          f"verified")
    return 0


def live(args) -> int:
    """Serve the live page, the /ditto/live WebSocket endpoint and WebRTC offers: speech in, frames out, in
    realtime."""
    import os

    from .live import LiveService, LiveSettings, PortraitLibrary, is_loopback, serve
    from .live.settings import stun_urls
    from .motion import SamplerOptions
    from .pipeline import DittoPipeline
    from .release import check_release

    ice_servers = stun_urls(args.ice_server)  # a bad one is told before the models load
    token = args.token or os.environ.get("DITTO_LIVE_TOKEN") or None
    if token is None and not is_loopback(args.host):
        raise UsageError(f"--host {args.host} lets other machines connect: give an access token with --token (or "
                         f"DITTO_LIVE_TOKEN), or listen on 127.0.0.1")
    if args.max_sessions < 1:
        raise UsageError("--max-sessions must be at least 1")
    portrait = Path(args.portrait).expanduser()
    if not portrait.is_file():
        raise UsageError(f"--portrait {args.portrait}: no such image file")
    status = check_release(args.models)
    if status.missing:
        print(status.report(), file=sys.stderr)
        print("error: the Ditto model files above are missing; download them, then run this command again.",
              file=sys.stderr)
        return 1
    pipeline = DittoPipeline.load(args.models, args.device)
    pipeline.require_online_config()
    portraits = PortraitLibrary(folder=args.portraits, default=portrait)
    start = time.perf_counter()
    portraits.get(None, pipeline)  # a portrait without a face is told now, not on the first session
    print(f"models from {args.models} on {args.device}; {portrait.name} ready in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
    sampler = SamplerOptions(steps=args.steps) if args.steps is not None else None
    settings = LiveSettings(max_sessions=args.max_sessions, token=token, allowed_origins=tuple(args.allow_origin),
                            max_message_bytes=args.max_message_bytes, sampler=sampler,
                            ice_servers=ice_servers)

    def ready(url: str) -> None:
        suffix = "?token=<the token>" if token else ""
        print(f"Ditto live: open {url}{suffix} in a browser; WebSocket endpoint "
              f"{url.replace('http', 'ws', 1)}ditto/live, WebRTC offers to {url}ditto/live/offer (Ctrl-C stops)",
              file=sys.stderr, flush=True)

    serve(LiveService(pipeline, portraits, settings), args.host, args.port, on_ready=ready)
    return 0


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_parser() -> argparse.ArgumentParser:
    from .batch.dispatch import STALL_TIMEOUT_S
    from .portrait.registration import LOOP_POLICIES
    from .precision import PRECISIONS
    from .video import ENCODERS, NVENC_PRESETS, X264_PRESETS

    parser = argparse.ArgumentParser(prog="python -m ditto_core", description="ComfyUI-Ditto core tools")
    commands = parser.add_subparsers(dest="command", required=True)
    models_help = "folder holding ditto_pytorch/ and ditto_cfg/ (the Hugging Face repo's layout)"
    device_help = "cpu or cuda (default: cuda when available)"

    r = commands.add_parser("render", help="portrait + speech → talking-head mp4")
    r.add_argument("--portrait", required=True,
                   help="image file with a face (jpg, png, webp, bmp, tiff), or a video to dub (mp4, mov, mkv, "
                        "webm, …): its head, body and background move as filmed, the mouth follows the speech")
    r.add_argument("--loop", choices=tuple(LOOP_POLICIES), default="ping-pong",
                   help="a video portrait shorter than the speech: " + "; ".join(
                       f"{name}: {what}" for name, what in LOOP_POLICIES.items()) + " (default %(default)s)")
    r.add_argument("--audio", required=True, help="speech: wav/flac/ogg, mp3/m4a/mp4 with PyAV")
    r.add_argument("--out", required=True, help="output .mp4 (the extension is added when missing; folders are made)")
    r.add_argument("--models", default="models/ditto", help=f"{models_help} (default: %(default)s)")
    r.add_argument("--emotion", default=None,
                   help="neutral|happy|angry|…, a mix happy+surprise, or a timeline 0:neutral,2.5:happy "
                        "(default: the release cfg's emotion sequence)")
    r.add_argument("--seed", type=int, default=0, help="one seed, one video: motion noise and blink timing "
                                                       "(default %(default)s)")
    r.add_argument("--steps", type=int, help="diffusion steps per window (default: the release cfg's)")
    r.add_argument("--overlap", type=int, help="frames shared by motion windows (default: the release cfg's)")
    r.add_argument("--smoothing", type=int, help="pose smoothing window in frames (default: the release cfg's)")
    r.add_argument("--code-defaults", action="store_true",
                   help="ignore ditto_cfg and use the reference code's built-in settings (not what official Ditto "
                        "does)")
    r.add_argument("--device", default=None, help=device_help)
    r.add_argument("--backend", choices=("onnx", "hubert"), default="onnx",
                   help="audio encoder: onnx (the release's, default) or hubert (transformers, an approximation)")
    r.add_argument("--hubert-dir", help="local facebook/hubert-large-ls960-ft folder for --backend hubert")
    r.add_argument("--batch-size", type=int, default=4, help="frames rendered together (default %(default)s)")
    r.add_argument("--max-size", type=int, help="longest side of the output video (default: the release cfg's)")
    r.add_argument("--face-index", type=int, default=0, help="which face when there are several, 0 = largest")
    r.add_argument("--detection-threshold", type=float,
                   help="face detector confidence, 0-1 (default 0.5); lower it when a face is not found")
    r.add_argument("--no-paste-back", action="store_true", help="output the 512x512 face crop only")
    r.add_argument("--encoder", choices=ENCODERS, default="auto", metavar="ENCODER",
                   help="video encoder: auto (h264_nvenc, the GPU's, when rendering on CUDA and it can be opened; "
                        "else libx264), libx264, h264_nvenc, hevc_nvenc (default %(default)s)")
    r.add_argument("--preset", choices=("auto", *X264_PRESETS, *NVENC_PRESETS), default="auto", metavar="PRESET",
                   help="encoder speed against file size at the same quality: auto (veryfast for libx264, p4 for "
                        "NVENC), libx264's ultrafast…veryslow or NVENC's p1…p7 (default %(default)s)")
    r.add_argument("--crf", type=int, default=18, help="video quality 0-51, lower is better (default %(default)s)")
    r.add_argument("--no-stitching", action="store_true",
                   help="skip the stitching network that keeps the face aligned with the shoulders")
    r.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="the warp network's and decoder's precision: auto (bf16 on CPUs with native bf16, fp16 on "
                        "CUDA), or fp32 for the reference's exact numbers (default %(default)s)")
    r.add_argument("--save-motion", help="also save the sampled motion (.safetensors; folders are made)")
    r.add_argument("--fps", type=float,
                   help="output frame rate, 10-60 (default: a video portrait's own, else 25): the motion is "
                        "resampled, the audio kept")

    d = commands.add_parser("download", help="download the release from Hugging Face, hash-checked")
    d.add_argument("--models", required=True, help=f"{models_help}, e.g. ComfyUI/models/ditto")
    d.add_argument("--revision", help="branch, tag or commit (default: the recorded commit, else main)")

    c = commands.add_parser("check", help="report which release files are present and load the networks")
    c.add_argument("--models", required=True, help=models_help)
    c.add_argument("--run", action="store_true", help="also run each network once on random input")
    c.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")

    g = commands.add_parser("config", help="show what the release's configuration (ditto_cfg) sets")
    g.add_argument("--models", required=True, help=models_help)
    g.add_argument("--online", action="store_true", help="the online cfg instead of the offline one")
    g.add_argument("--json", action="store_true", help="machine-readable output")

    f = commands.add_parser("features", help="encode speech to Ditto's 25-fps HuBERT features")
    f.add_argument("--audio", required=True, help="wav/flac/ogg (mp3/m4a/mp4 with PyAV)")
    f.add_argument("--models", help=f"{models_help} (for the onnx back-end)")
    f.add_argument("--out", required=True, help="output .npy file (the extension is added when missing)")
    f.add_argument("--backend", choices=("onnx", "hubert"), default="onnx",
                   help="onnx (the release's encoder, default) or hubert (transformers, an approximation)")
    f.add_argument("--hubert-dir", help="local facebook/hubert-large-ls960-ft folder (hubert back-end)")
    f.add_argument("--download-hubert", action="store_true", help="download HuBERT into --hubert-dir first")
    f.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")

    b = commands.add_parser("batch", help="render a manifest of jobs (CSV) on this machine or a Ray cluster, "
                                          "resumable")
    b.add_argument("jobs", help="CSV with a header: portrait,audio (required), name,emotion,seed,fps,steps "
                                "(optional); paths relative to the CSV's folder or absolute")
    b.add_argument("--models", required=True, help=f"{models_help}; with --ray, the same path on every node")
    b.add_argument("--out", required=True, help="output folder: NAME.mp4 per job and results.jsonl (made if needed)")
    b.add_argument("--workers", type=int, help="workers, each loading the models once (default: one per CUDA "
                                               "device, one in all on a CPU-only machine; with --ray, one per GPU "
                                               "of the cluster, else one per node)")
    b.add_argument("--ray", metavar="ADDRESS",
                   help="run the workers as Ray actors: 'local' (a throwaway local Ray instance), 'auto' (the "
                        "running cluster) or a cluster address; needs pip install ray")
    b.add_argument("--save-motion", action="store_true", help="also save each job's motion as NAME.safetensors")
    b.add_argument("--retries", type=int, default=1, help="times a job is tried again when its worker dies (killed, "
                                                        "out of memory, a lost node) or stalls; the worker is "
                                                        "replaced (default %(default)s)")
    b.add_argument("--stall-timeout", type=float, default=STALL_TIMEOUT_S, metavar="SECONDS",
                   help="a busy worker without progress (no frame, no render batch) for this long is ended and "
                        "its job retried; a worker not started within it (at least 600 s) is given up; 0: never "
                        "(default %(default)g)")

    v = commands.add_parser("live", help="realtime: serve a page, a WebSocket endpoint and WebRTC, speech in, "
                                         "frames out")
    v.add_argument("--models", default="models/ditto", help=f"{models_help} (default: %(default)s)")
    v.add_argument("--portrait", required=True, help="the image to animate (used when a session names none)")
    v.add_argument("--portraits", help="also offer the images of this folder (a session's \"portrait\" names one)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine "
                                                      "only; any other needs --token)")
    v.add_argument("--port", type=int, default=8765, help="(default %(default)s)")
    v.add_argument("--token", help="access token every session must send (start message or ?token=); required "
                                   "to listen beyond 127.0.0.1 (default: $DITTO_LIVE_TOKEN)")
    v.add_argument("--allow-origin", action="append", default=[],
                   help="a page origin (https://host:port) allowed to connect besides this server's own; repeatable")
    v.add_argument("--max-sessions", type=int, default=2, help="sessions run side by side (default %(default)s); "
                                                               "more get a busy error, and so does a session the "
                                                               "device could not keep at 25 frames/s, as measured")
    v.add_argument("--ice-server", action="append", default=[],
                   help="a STUN URL for WebRTC beyond a LAN (stun:host:port), used by the server and the page; "
                        "repeatable. None by default: host candidates only, enough on this machine or a LAN")
    v.add_argument("--max-message-bytes", type=int, default=1 << 20,
                   help="largest message accepted (default %(default)s)")
    v.add_argument("--steps", type=int, help="diffusion steps per window (default: the release's online cfg)")
    v.add_argument("--device", default=None, help=device_help)
    return parser


COMMANDS = {"render": render, "download": download, "check": check, "config": show_config, "features": features,
            "batch": batch, "live": live}


def expected_errors() -> tuple[type[BaseException], ...]:
    """The errors that carry a message for the user (shown as one line, no traceback)."""
    from .audio import AudioInputError, EncoderError
    from .batch import BatchError
    from .config_pickle import ConfigFileError
    from .download import DownloadError
    from .models import CheckpointError
    from .motion import ConditionError
    from .portrait import FaceModelError, NoFaceError, PortraitInputError

    return (UsageError, AudioInputError, EncoderError, CheckpointError, ConfigFileError, FaceModelError, NoFaceError,
            PortraitInputError, ConditionError, DownloadError, BatchError, ValueError, OSError)


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C / SIGINT stops the command even when it was started with SIGINT ignored (as shells start background
    # jobs): the work in progress is always discarded cleanly
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    if getattr(args, "device", "cpu") is None:
        args.device = default_device()
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("\nstopped" if args.command == "live" else "\ninterrupted; no partial file was left", file=sys.stderr)
        return INTERRUPTED
    except expected_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
