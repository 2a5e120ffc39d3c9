"""Every GPU question in one run: is each network right on the device, how fast is each stage and the whole chain,
how live sessions fare, how much device memory long speech takes, and what the host costs around the networks.

    python bench/gpu.py --out DIR [--device cuda|cpu] [--small] [--quick] [--models DIR] [--budget SECONDS]
                        [--only SECTION/PART,...]

Writes ``DIR/gpu-report.json`` (top-level objects ``device``, ``correctness``, ``speed``, ``live``, ``memory``,
``host``, and ``not_measured``: what could not be measured and why) and the same as Markdown tables in
``DIR/gpu-report.md``, both rewritten after every section, so a run stopped at its time limit keeps what it
measured. Without ``--models`` it writes a fake release itself (seeded random weights; official network sizes,
or the small test sizes with ``--small``) and uses the shipped sample portrait and speech. ``--quick`` shortens
every clip and batch list (the test suite runs ``--device cpu --small --quick``). Sections that would start
after ``--budget`` seconds (default 420: the whole run stays within 8 minutes) are skipped and listed as not
measured. No figure is ever filled in that was not measured.

On a bare CUDA machine without PyAV, soundfile and soxr: ``bench/gpu_wheels.sh .whl`` on a machine with
internet access, carry ``.whl`` over, and see README "Checking a GPU".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ditto_core.audio import load_audio  # noqa: E402
from ditto_core.motion import Motion, SamplerOptions  # noqa: E402
from ditto_core.motion.sampler import (  # noqa: E402
    Window,
    WindowSampler,
    denoise_steps,
    first_frame_vector,
    window_graph,
)
from ditto_core.networks import DittoNetworks, load_networks  # noqa: E402
from ditto_core.pipeline import DittoPipeline  # noqa: E402
from ditto_core.portrait.paste import FacePlacement, paste_faces  # noqa: E402
from ditto_core.portrait.registration import network_input  # noqa: E402
from ditto_core.precision import DeviceDescription, ImageDifference, precision_plan  # noqa: E402
from ditto_core.render import RenderOptions, render_frames  # noqa: E402
from ditto_core.stream import speech_to_frames, speech_to_video  # noqa: E402
from ditto_core.testing.fake_release import write_fake_release  # noqa: E402
from ditto_core.video import VideoEncoding, encoder_works, write_mp4  # noqa: E402

SECTIONS = ("device", "correctness", "speed", "live", "memory", "host")
REL_TOLERANCE = 1e-3  # each network on the device at fp32 against the CPU at fp32
# HuBERT features, onnxruntime's CUDA provider against its CPU provider: the CUDA provider runs its matmuls in TF32
# by default (10-bit mantissa), which through 12 transformer layers moves features by up to about 1e-2 relative
AUDIO_REL_TOLERANCE = 1e-2
# the targets, printed beside the figures
TARGETS = {
    "end to end 512² (frames/s, one stream, H100/H200)": 60,
    "end to end 1080p paste-back + encode (frames/s)": 30,
    "live first frame (ms after the look-ahead)": 150,
    "live sessions at 25 frames/s": 4,
    "peak device memory at batch 4 (GB)": 3,
    "host side of a 1080p frame on the CPU (ms)": 10,
    "render 1080p, small release, wall per extra frame (ms; 0.6 x 124 ms at 76ef0b3)": 0.6 * 124,
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """Seconds per call after one warm-up call, device work included."""
    fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ over every element, in float64 on the CPU."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


class Report:
    """The report's sections, written to JSON and Markdown after each one."""

    def __init__(self, out: Path, budget_s: float, only: tuple[str, ...] = ()):
        self.out, self.budget_s, self.only, self.started = out, budget_s, only, time.perf_counter()
        self.data: dict = {name: {} for name in SECTIONS}
        self.data["not_measured"] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def skip(self, what: str, why: str) -> None:
        self.data["not_measured"][what] = why
        print(f"not measured: {what}: {why}", flush=True)

    def run(self, section: str, part: str, measure: Callable[[], dict]) -> None:
        """``measure()``'s figures under ``report[section][part]``; a failure is recorded as not measured, with
        its error, and the run goes on. With ``only``, parts whose ``section/part`` starts with none of its
        entries are left out (and listed)."""
        if self.only and not any(f"{section}/{part}".startswith(prefix) for prefix in self.only):
            self.skip(f"{section}/{part}", "not among --only")
            return
        if self.elapsed() > self.budget_s:
            self.skip(f"{section}/{part}", f"time budget of {self.budget_s:.0f} s spent before it started")
            return
        started = time.perf_counter()
        print(f"[{self.elapsed():6.1f} s] {section}/{part} ...", flush=True)
        try:
            self.data[section][part] = measure()
        except Exception as exc:  # recorded in the report, never hidden
            self.skip(f"{section}/{part}", f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
        print(f"[{self.elapsed():6.1f} s] {section}/{part} took {time.perf_counter() - started:.1f} s", flush=True)
        self.save()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.data["device"]["bench_seconds"] = round(self.elapsed(), 1)
        (self.out / "gpu-report.json").write_text(json.dumps(self.data, indent=1, default=str))
        (self.out / "gpu-report.md").write_text(markdown(self.data))


def markdown(data: dict) -> str:
    """Each section as a two-column table of its flattened figures."""
    lines = ["# bench/gpu.py report", ""]
    for section, content in data.items():
        lines += [f"## {section}", "", "| what | value |", "|---|---|"]
        for key, value in flatten(content):
            lines.append(f"| {key} | {format_value(value)} |")
        lines.append("")
    lines += ["## targets", "", "| target | value |", "|---|---|"]
    lines += [f"| {name} | {value:g} |" for name, value in TARGETS.items()]
    return "\n".join(lines) + "\n"


def flatten(content, prefix: str = ""):
    if isinstance(content, dict):
        for key, value in content.items():
            yield from flatten(value, f"{prefix} / {key}" if prefix else str(key))
    else:
        yield prefix, content


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "/")


# --- the set-up ------------------------------------------------------------------------------------------------------
class Bench:
    """The release, the pipeline on the device (and on the CPU for comparisons), portraits and speech."""

    def __init__(self, args, tmp: Path, report: Report):
        self.args, self.device, self.report = args, torch.device(args.device), report
        self.quick = args.quick
        self.root = Path(args.models) if args.models else write_fake_release(tmp / "release", small=args.small)
        self.pipeline = DittoPipeline.load(self.root, args.device)
        image = cv2.cvtColor(cv2.imread(str(ROOT / "assets" / "portrait.jpg")), cv2.COLOR_BGR2RGB)
        self.portrait_512 = self.pipeline.register(cv2.resize(image, (512, 512), interpolation=cv2.INTER_AREA))
        self.portrait_1080 = in_hd_frame(self.pipeline.register(image))
        speech = load_audio(ROOT / "assets" / "speech.wav")
        self.speech = speech.samples
        self.tmp = tmp

    def clip(self, seconds: float):
        reps = int(np.ceil(seconds * 16000 / len(self.speech)))
        return load_audio(np.tile(self.speech, reps)[: int(seconds * 16000)], 16000, name=f"speech {seconds:g} s")

    def sampler(self) -> SamplerOptions | None:
        return SamplerOptions(steps=5) if self.args.small else None

    def motion(self, frames: int) -> Motion:
        return Motion(torch.randn(frames, 265, generator=torch.Generator().manual_seed(0)) * 0.05)


def source_faces(portrait, count: int) -> torch.Tensor:
    """``[count, 512, 512, 3]`` float in [0, 1]: the portrait's own face crop, slightly different each time (what a
    renderer makes looks like this, not like noise, which no encoder compresses)."""
    crop = cv2.warpAffine(portrait.images[0], portrait.image_to_crop[0][:2].astype(np.float64), (512, 512))
    return torch.stack([torch.from_numpy(np.roll(crop, 2 * i, axis=0)) for i in range(count)]).float() / 255


def in_hd_frame(portrait):
    """The registered portrait placed 720 px tall in a 1920x1080 frame, bottom centre: a medium shot, as a 1080p
    video frame holds a speaker (its face's crop then covers about a quarter of the frame). The same face and
    crop, moved (the fake release's detector sees a fixed face box, so a 1080p frame cannot be registered as one)."""
    image = portrait.images[0]
    scale = 720 / image.shape[0]
    width = round(image.shape[1] * scale)
    canvas = np.full((1080, 1920, 3), 128, np.uint8)
    left, top = (1920 - width) // 2, 1080 - 720
    canvas[top:, left : left + width] = cv2.resize(image, (width, 720), interpolation=cv2.INTER_CUBIC)
    placed = np.array([[scale, 0, left], [0, scale, top], [0, 0, 1]], np.float64)
    crop_to_image = (placed @ portrait.crop_to_image.astype(np.float64)).astype(np.float32)
    return replace(portrait, images=canvas[None], crop_to_image=crop_to_image,
                   image_to_crop=np.linalg.inv(crop_to_image.astype(np.float64)).astype(np.float32))


# --- device --------------------------------------------------------------------------------------------------------
def describe_device(bench: Bench) -> dict:
    import av
    import onnxruntime

    device = bench.device
    out = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
           "cpu_cores": os.cpu_count(), "pyav": av.__version__,
           "onnxruntime": onnxruntime.__version__, "onnxruntime_providers": onnxruntime.get_available_providers(),
           "nvenc_h264": encoder_works("h264_nvenc"), "nvenc_hevc": encoder_works("hevc_nvenc"),
           "release": "official files" if bench.args.models else
           f"fake release, {'small test' if bench.args.small else 'official'} network sizes, random weights",
           "auto precision": precision_plan(DeviceDescription.of(device), "auto").precision}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(name=props.name, capability=f"{props.major}.{props.minor}",
                   memory_gb=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        out["name"] = platform.processor() or platform.machine()
    try:
        import torchvision

        out["torchvision"] = torchvision.__version__
    except ImportError:
        out["torchvision"] = "not installed"
    return out


# --- correctness -----------------------------------------------------------------------------------------------------
def network_inputs(bench: Bench) -> dict:
    """Seeded inputs for each network, built on the CPU from the registered portrait."""
    portrait = bench.portrait_512
    gen = torch.Generator().manual_seed(0)
    crop = cv2.warpAffine(portrait.images[0], portrait.image_to_crop[0][:2].astype(np.float64), (512, 512))
    x_s = portrait.source_keypoints()[:1]
    x_d = x_s + 0.02 * torch.randn(x_s.shape, generator=gen)
    lmdm = bench.pipeline.networks.lmdm
    return {"crop": network_input(crop), "appearance": portrait.appearance[:1].float(), "x_s": x_s, "x_d": x_d,
            "cond": torch.randn(80, lmdm.config.cond_dim, generator=gen), "first": first_frame_vector(
                portrait.keypoints)}


def run_networks(networks: DittoNetworks, inputs: dict, device: torch.device, autocast_precision: str | None = None
                 ) -> dict[str, torch.Tensor]:
    """Each network once on ``device`` (the warp network and decoder under ``autocast_precision``'s plan)."""
    on = {name: value.to(device) for name, value in inputs.items()}
    plan = precision_plan(DeviceDescription.of(device), autocast_precision or "fp32")
    with torch.inference_mode():
        outputs = {"appearance_extractor": networks.appearance_extractor(on["crop"]),
                   "motion_extractor": torch.cat([o.flatten(1) for o in networks.motion_extractor(on["crop"])], 1),
                   "stitch_network": networks.stitch_network(on["x_s"], on["x_d"])}
        with plan.autocast("warp_network", device.type):
            warped = networks.warp_network(on["appearance"], on["x_s"], on["x_d"])
        outputs["warp_network"] = warped
        with plan.autocast("decoder", device.type):
            outputs["decoder"] = networks.decoder(warped)
        outputs["lmdm (one window, 3 steps)"] = WindowSampler(networks.lmdm, 3, seed=0)(on["first"], on["cond"])
    return {name: value.float() for name, value in outputs.items()}


def correctness_networks(bench: Bench) -> dict:
    inputs = network_inputs(bench)
    cpu = load_networks(bench.root, "cpu")
    reference = run_networks(cpu, inputs, torch.device("cpu"))
    out = {}
    for tf32 in (False, True):
        if bench.device.type != "cuda" and tf32:
            break
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        on_device = run_networks(bench.pipeline.networks, inputs, bench.device)
        label = "fp32, TF32 allowed" if tf32 else "fp32"
        out[label] = {name: {"rel": relative(on_device[name], reference[name]),
                             "ok": relative(on_device[name], reference[name]) <= REL_TOLERANCE}
                      for name in reference}
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default for convolutions
    return out


def correctness_precision(bench: Bench) -> dict:
    """auto precision's frames against fp32's, on the device, over the face (the precision bound)."""
    portrait, motion = bench.portrait_512, bench.motion(8)
    frames = {}
    for precision in ("fp32", "auto"):
        options = RenderOptions(batch_size=4, precision=precision, paste_back=False)
        frames[precision] = np.stack(list(render_frames(bench.pipeline.networks, portrait, motion, options)))
    diff = ImageDifference.between(frames["auto"], frames["fp32"])
    plan = precision_plan(DeviceDescription.of(bench.device), "auto")
    return {"auto is": plan.precision, "mean levels": diff.mean, "p99.9 levels": diff.p999, "max levels": diff.max,
            "psnr dB": diff.psnr, "within bound": diff.within_bound}


def correctness_clip(bench: Bench) -> dict:
    """A one-pass clip (speech → frames, fp32) on the device against the same on the CPU."""
    clip = bench.clip(0.32)  # 8 frames: at official sizes the CPU takes seconds each
    options = bench.pipeline.render_options(precision="fp32")
    sampler = SamplerOptions(steps=5, seed=0) if bench.args.small else SamplerOptions(seed=0)
    device_frames = np.stack(list(speech_to_frames(bench.pipeline, bench.portrait_512, clip, sampler=sampler,
                                                   render=options)))
    cpu_pipeline = DittoPipeline.load(bench.root, "cpu")
    cpu_frames = np.stack(list(speech_to_frames(cpu_pipeline, bench.portrait_512, clip, sampler=sampler,
                                                render=options)))
    diff = ImageDifference.between(device_frames, cpu_frames)
    return {"frames": len(device_frames), "mean levels": diff.mean, "p99.9 levels": diff.p999,
            "max levels": diff.max, "psnr dB": diff.psnr}


def correctness_audio(bench: Bench) -> dict:
    """The release's HuBERT features on onnxruntime's CUDA provider against its CPU provider, with the time each
    takes for 10 s of speech."""
    import onnxruntime

    from ditto_core.audio.encoders import load_encoder
    from ditto_core.audio.features import extract_features

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise RuntimeError(f"this onnxruntime ({onnxruntime.__version__}) has no CUDA provider: install "
                           "onnxruntime-gpu in its place")
    clip = bench.clip(10.0)
    out = {}
    features = {}
    for device in ("cpu", "cuda"):
        encoder = load_encoder("onnx", release_root=bench.root, device=device)
        extract_features(bench.clip(1.0), encoder)
        started = time.perf_counter()
        features[device] = extract_features(clip, encoder).frames
        out[f"{device} provider: audio s per wall s"] = clip.duration_s / (time.perf_counter() - started)
    difference = (features["cuda"] - features["cpu"]).abs()
    rel = relative(features["cuda"], features["cpu"])
    out.update({"max abs difference": float(difference.max()), "rel": rel, "ok": rel <= AUDIO_REL_TOLERANCE})
    return out


# --- speed -----------------------------------------------------------------------------------------------------------
def batch_sizes(bench: Bench, compiled: bool = False) -> list[int]:
    if bench.quick:
        return [1, 4]
    return [4, 16] if compiled else [1, 4, 8, 16]  # each compiled batch size is compiled anew


def stage_speed(bench: Bench, compiled: bool) -> dict:
    """ms per frame of stitching, warp network and decoder at each batch size (the render's precision), and
    the LMDM window; with ``compiled`` the warp network and decoder in ``torch.compile`` (first-call time
    reported as compile time)."""
    networks, device = bench.pipeline.networks, bench.device
    plan = precision_plan(DeviceDescription.of(device), "auto")
    warp_network = torch.compile(networks.warp_network) if compiled else networks.warp_network
    decoder = torch.compile(networks.decoder) if compiled else networks.decoder
    inputs = network_inputs(bench)
    out = {}
    for batch in batch_sizes(bench, compiled):
        x_s = inputs["x_s"].expand(batch, -1, -1).to(device)
        x_d = inputs["x_d"].expand(batch, -1, -1).to(device)
        volume = inputs["appearance"].expand(batch, -1, -1, -1, -1).to(device)

        def warp():
            with plan.autocast("warp_network", device.type):
                return warp_network(volume, x_s, x_d)

        def decode():
            with plan.autocast("decoder", device.type):
                return decoder(warped)

        with torch.inference_mode():
            started = time.perf_counter()
            warped = warp()
            decode()
            synchronize(device)
            first_call = time.perf_counter() - started
            row = {"stitching": timed(lambda: networks.stitch_network(x_s, x_d), device) / batch * 1000,
                   "warp": timed(warp, device) / batch * 1000, "decoder": timed(decode, device) / batch * 1000}
        if compiled:
            row["compile s (first call)"] = first_call
        out[f"batch {batch} (ms/frame)"] = row
    if not compiled:
        out["LMDM window (80 frames)"] = lmdm_window_speed(bench, inputs)
    return out


def lmdm_window_speed(bench: Bench, inputs: dict) -> dict:
    """One LMDM window at the release's steps: eager, and (CUDA) replayed from the graph the pipeline captured at
    load, and how far the graph's windows are from the eager ones (the same seed: the same noise)."""
    networks, device = bench.pipeline.networks, bench.device
    steps = 5 if bench.args.small else bench.pipeline.config.chain.steps
    first, cond = inputs["first"].to(device), inputs["cond"].to(device)
    out = {"steps": steps}
    runs = {"eager": lambda sampler: denoise_steps(networks.lmdm, [window(sampler)])}
    graph = window_graph(networks.lmdm, steps)
    if graph is not None:
        runs["CUDA graph"] = lambda sampler: graph(window(sampler))
    else:
        bench.report.skip("speed/LMDM window CUDA graph", f"no graph captured on {device.type}")

    def window(sampler: WindowSampler) -> Window:
        x = torch.randn(sampler.shape, generator=sampler.generator).to(device)
        return Window(x, first[None], cond[None], sampler.schedule, sampler.noises)

    windows = {}
    with torch.inference_mode():
        for label, run in runs.items():
            sampler = WindowSampler(networks.lmdm, steps, seed=0)
            windows[label] = run(sampler)
            seconds = timed(lambda: run(sampler), device, 3)
            out[f"{label} ms"] = seconds * 1000
            out[f"{label} ms/frame"] = seconds * 1000 / 80
    if len(windows) == 2:
        out["CUDA graph against eager, max abs difference"] = float((windows["CUDA graph"] - windows["eager"]).abs()
                                                                    .max())
    return out


def paste_and_encode_speed(bench: Bench) -> dict:
    """1080p paste-back per frame on the device (faces already there), and encoding per frame with each
    encoder, with its file size and PSNR against the frames it was given."""
    portrait, device = bench.portrait_1080, bench.device
    batch = 4
    faces = source_faces(portrait, batch).to(device)
    placement = FacePlacement.of(portrait, 0, batch)
    out = {"paste-back 1080p (ms/frame)": timed(lambda: list(paste_faces(faces, placement, with_masks=False)),
                                                device) / batch * 1000}
    frames = [frame for frame, _ in paste_faces(faces, placement, with_masks=False)]
    motion_frames = [np.roll(frames[i % batch], 4 * i, axis=1) for i in range(8 if bench.quick else 50)]
    encoders = [("libx264", "veryfast"), ("libx264", "medium")]
    if encoder_works("h264_nvenc"):
        encoders += [("h264_nvenc", "p1"), ("h264_nvenc", "p4")]
    else:
        bench.report.skip("speed/encode h264_nvenc", "PyAV cannot open h264_nvenc here")
    for codec, preset in encoders[:1] if bench.quick else encoders:
        for crf in (18,) if bench.quick else (18, 21):
            out[f"encode 1080p {codec} {preset} crf/cq {crf}"] = encode_figures(bench, motion_frames, codec, preset,
                                                                                crf)
    return out


def encode_figures(bench: Bench, frames: list[np.ndarray], codec: str, preset: str, crf: int) -> dict:
    import av

    path = bench.tmp / f"encode-{codec}-{preset}-{crf}.mp4"
    started = time.perf_counter()
    write_mp4(path, frames, 25.0, encoding=VideoEncoding(crf, codec, preset))
    seconds = time.perf_counter() - started
    errors = []
    with av.open(str(path)) as container:
        for index, decoded in enumerate(container.decode(video=0)):
            errors.append(np.mean((decoded.to_ndarray(format="rgb24").astype(np.float64) - frames[index]) ** 2))
    psnr = 10 * np.log10(255**2 / max(np.mean(errors), 1e-12))
    return {"ms/frame": seconds / len(frames) * 1000, "KB/frame": path.stat().st_size / len(frames) / 1024,
            "psnr dB": psnr}


def end_to_end(bench: Bench, portrait, paste: bool, label: str) -> dict:
    """Speech → mp4 in one pass (audio features, motion, render, paste-back, encoding), frames/s after a warm-up,
    and the share of each frame's time the host spends pasting and handing frames to the encoder."""
    seconds = 0.6 if bench.quick else 20.0
    options = bench.pipeline.render_options(paste_back=paste, batch_size=4)
    speech_to_video(bench.tmp / "warm.mp4", bench.pipeline, portrait, bench.clip(0.3), sampler=bench.sampler(),
                    render=options)
    clip = bench.clip(seconds)
    synchronize(bench.device)
    started = time.perf_counter()
    motion = speech_to_video(bench.tmp / f"{label}.mp4", bench.pipeline, portrait, clip, sampler=bench.sampler(),
                             render=options)
    synchronize(bench.device)
    wall = time.perf_counter() - started
    out = {"frames": len(motion), "frames/s": len(motion) / wall, "ms/frame": wall / len(motion) * 1000,
           "frame size": f"{portrait.images.shape[2]}x{portrait.images.shape[1]}" if paste else "512x512 (crop)"}
    if paste:
        faces = source_faces(portrait, 4).to(bench.device)
        placement = FacePlacement.of(portrait, 0, 4)
        paste_ms = timed(lambda: list(paste_faces(faces, placement, with_masks=False)), bench.device) / 4 * 1000
        out["host share (paste-back + hand-off)"] = (paste_ms + handoff_ms(bench, portrait)) / out["ms/frame"]
    return out


def handoff_ms(bench: Bench, portrait) -> float:
    """ms the renderer's thread spends per frame giving a frame to the encoder thread (write_mp4's own time per
    frame, measured between the frames the caller makes)."""
    frame = portrait.images[0]
    spent, count = [0.0], 40
    last = [None]

    def frames():
        for _ in range(count):
            now = time.perf_counter()
            if last[0] is not None:
                spent[0] += now - last[0]
            time.sleep(0.01)  # the renderer's share of a frame, during which the encoder catches up
            last[0] = time.perf_counter()
            yield frame

    write_mp4(bench.tmp / "handoff.mp4", frames(), 25.0, device_type=bench.device.type)
    return spent[0] / (count - 1) * 1000


# --- live ------------------------------------------------------------------------------------------------------------
def live_sessions(bench: Bench, sessions: int) -> dict:
    """``sessions`` clients side by side on one server at speaking pace (bench/live.py's client)."""
    import live as live_bench  # bench/live.py

    from ditto_core.live import LiveService, LiveSettings, PortraitLibrary

    seconds = 0.6 if bench.quick else 4.0
    samples = bench.clip(seconds).samples
    settings = LiveSettings(max_sessions=sessions, admit_by_capacity=False,  # every session is measured
                            sampler=bench.sampler())
    service = LiveService(bench.pipeline, PortraitLibrary(default=str(ROOT / "assets" / "portrait.jpg")), settings)
    service.portraits.get(None, bench.pipeline)

    async def clients(url: str) -> list:
        return await asyncio.gather(*[live_bench.client(url, samples, None) for _ in range(sessions)],
                                    return_exceptions=True)

    with live_bench.Server(service) as server:
        asyncio.run(live_bench.client(server.url, samples[:8000], None))  # warm-up
        outcomes = asyncio.run(clients(server.url))
    results = [r for r in outcomes if isinstance(r, dict)]
    refused = [str(r) for r in outcomes if not isinstance(r, dict)]
    if not results:
        raise RuntimeError(f"every session was refused: {refused[0]}")
    split = (results[0]["server"] or {}).get("first_frame_split_ms") or {}
    return {"sessions admitted": len(results), "sessions refused": len(refused),
            "refusal": refused[0] if refused else None,
            "first frame ms (client)": float(np.mean([r["first_ms"] for r in results])),
            "look-ahead ms": split.get("lookahead"),
            "compute after the look-ahead ms": (sum(split.get(k, 0) for k in ("waiting", "sampling", "rendering"))
                                                if split else None),
            "frames/s per session (min)": min(r["fps"] or 0 for r in results),
            "frames/s per session (mean)": float(np.mean([r["fps"] or 0 for r in results])),
            "lag max s": max(r["lag_max_s"] for r in results)}


# --- memory ----------------------------------------------------------------------------------------------------------
def peak_memory(bench: Bench, seconds: float) -> dict:
    """Peak device memory (CUDA) or peak process RSS (CPU, monotonic over the run) for ``seconds`` of speech."""
    import resource

    options = bench.pipeline.render_options(batch_size=4)
    if bench.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(bench.device)
    speech_to_video(bench.tmp / "memory.mp4", bench.pipeline, bench.portrait_1080, bench.clip(seconds),
                    sampler=bench.sampler(), render=options)
    if bench.device.type == "cuda":
        return {"peak device memory GB (batch 4)": torch.cuda.max_memory_allocated(bench.device) / 2**30,
                "peak device memory reserved GB": torch.cuda.max_memory_reserved(bench.device) / 2**30}
    return {"peak process RSS GB so far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def comfy_memory(bench: Bench, seconds: float = 10.0) -> dict:
    """Ditto's networks under ComfyUI's model management, as the nodes hand them over (one ModelPatcher loaded with
    load_models_gpu; the nodes' HeldModelPatcher is this one outside a live session): device memory once loaded,
    the peak while rendering ``seconds`` of speech at 1080p, and what is left after ComfyUI offloads every model
    (what a graph that needs the memory gets back)."""
    import comfy.model_patcher
    from comfy import model_management

    pipeline = DittoPipeline.load(bench.root, "cpu")
    patcher = comfy.model_patcher.ModelPatcher(pipeline.networks.as_module(), load_device=bench.device,
                                               offload_device=torch.device("cpu"))
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(bench.device)
    model_management.load_models_gpu([patcher])
    loaded = torch.cuda.memory_allocated(bench.device) - before
    torch.cuda.reset_peak_memory_stats(bench.device)
    speech_to_video(bench.tmp / "comfy.mp4", pipeline, bench.portrait_1080, bench.clip(seconds),
                    sampler=bench.sampler(), render=pipeline.render_options(batch_size=4))
    peak = torch.cuda.max_memory_allocated(bench.device) - before
    model_management.unload_all_models()
    torch.cuda.empty_cache()
    return {"networks loaded GB": loaded / 2**30, f"peak rendering {seconds:g} s at 1080p GB": peak / 2**30,
            "left after ComfyUI offloaded them GB": (torch.cuda.memory_allocated(bench.device) - before) / 2**30}


# --- host ------------------------------------------------------------------------------------------------------------
def host_figures(bench: Bench) -> dict:
    """What the CPU does around the networks for a 1080p frame: paste-back on the CPU, the hand-off to the encoder,
    and the render's wall time per extra frame on a 1080p portrait (the small release makes the networks nearly
    free, so this is host work)."""
    small_root = bench.root if bench.args.small else write_fake_release(bench.tmp / "small", small=True)
    pipeline = DittoPipeline.load(small_root, "cpu")
    portrait = in_hd_frame(pipeline.register(cv2.cvtColor(cv2.imread(str(ROOT / "assets" / "portrait.jpg")),
                                                          cv2.COLOR_BGR2RGB)))
    faces = source_faces(portrait, 4)
    placement = FacePlacement.of(portrait, 0, 4)
    cpu = torch.device("cpu")
    out = {"paste-back 1080p on the CPU (ms/frame)":
           timed(lambda: list(paste_faces(faces, placement, with_masks=False)), cpu, repeats=10) / 4 * 1000,
           "hand-off to the encoder (ms/frame)": handoff_ms(bench, portrait)}
    out["host side of a 1080p frame (ms)"] = out["paste-back 1080p on the CPU (ms/frame)"] + out[
        "hand-off to the encoder (ms/frame)"]
    walls = {}
    short, long = (0.4, 0.8) if bench.quick else (2.0, 4.0)
    sampler = SamplerOptions(steps=5)
    speech_to_video(bench.tmp / "warm-host.mp4", pipeline, portrait, bench.clip(0.2), sampler=sampler)
    for seconds in (short, long):
        started = time.perf_counter()
        motion = speech_to_video(bench.tmp / "host.mp4", pipeline, portrait, bench.clip(seconds), sampler=sampler)
        walls[len(motion)] = time.perf_counter() - started
    (n_short, t_short), (n_long, t_long) = sorted(walls.items())
    out["render 1080p, small release, wall per extra frame (ms)"] = (t_long - t_short) / (n_long - n_short) * 1000
    out["cpu threads"] = torch.get_num_threads()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu-report.json and gpu-report.md")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="the fake release at the small test sizes")
    parser.add_argument("--quick", action="store_true", help="shorter clips, fewer batch sizes and sessions")
    parser.add_argument("--models", help="a real release folder instead of the fake one")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which no section starts")
    parser.add_argument("--only", default="", help="comma-separated section/part prefixes to measure (e.g. "
                                                   "speed/stages,live): the others are listed as not measured")
    args = parser.parse_args()
    report = Report(Path(args.out), args.budget, tuple(p for p in args.only.split(",") if p))
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, Path(tmp), report)
        report.data["device"] = describe_device(bench)
        report.save()
        report.run("correctness", "networks, device fp32 against CPU fp32", lambda: correctness_networks(bench))
        report.run("correctness", "auto precision against fp32", lambda: correctness_precision(bench))
        if bench.device.type == "cpu":
            report.skip("correctness/one-pass clip, device against CPU", "the device is the CPU")
        else:
            report.run("correctness", "one-pass clip, device against CPU", lambda: correctness_clip(bench))
        if bench.device.type == "cuda":
            report.run("correctness", "audio features, CUDA provider against CPU", lambda: correctness_audio(bench))
        report.run("speed", "stages eager", lambda: stage_speed(bench, compiled=False))
        report.run("speed", "paste-back and encode", lambda: paste_and_encode_speed(bench))
        report.run("speed", "end to end 512", lambda: end_to_end(bench, bench.portrait_512, False, "e2e-512"))
        report.run("speed", "end to end 1080p", lambda: end_to_end(bench, bench.portrait_1080, True, "e2e-1080"))
        for sessions in ([1, 2] if args.quick else [1, 2, 4, 8]):
            report.run("live", f"{sessions} sessions", lambda n=sessions: live_sessions(bench, n))
        short, long = (0.6, 1.8) if args.quick else (10.0, 60.0)
        report.run("memory", f"{short:g} s of speech", lambda: peak_memory(bench, short))
        if args.quick:
            report.skip("speed/stages torch.compile", "--quick")
        else:
            report.run("speed", "stages torch.compile", lambda: stage_speed(bench, compiled=True))
        report.run("memory", f"{long:g} s of speech", lambda: peak_memory(bench, long))
        try:
            import comfy.model_management  # noqa: F401
        except ImportError:
            report.skip("memory/ComfyUI model management", "ComfyUI is not importable here")
        else:
            if bench.device.type == "cuda":
                report.run("memory", "ComfyUI model management", lambda: comfy_memory(bench))
            else:
                report.skip("memory/ComfyUI model management", "device memory is measured on CUDA")
        report.run("host", "1080p", lambda: host_figures(bench))
    report.save()
    print(f"wrote {report.out / 'gpu-report.json'} and gpu-report.md in {report.elapsed():.0f} s")

if __name__ == "__main__":
    main()
