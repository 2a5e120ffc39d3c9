"""Render nodes: motion + portrait → IMAGE batch (and VIDEO), or straight to an mp4 in the output folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch

from ..ditto_core.audio import load_audio
from ..ditto_core.audio.clip import FPS, AudioClip, num_video_frames
from ..ditto_core.motion.motion import preview_curves
from ..ditto_core.portrait.paste import FacePlacement
from ..ditto_core.portrait.registration import Portrait
from ..ditto_core.precision import PRECISIONS
from ..ditto_core.render import RenderOptions, faces_to_frames, render_faces
from ..ditto_core.stream import (
    MAX_FPS,
    MIN_FPS,
    check_fps,
    clip_for_source,
    default_fps,
    encode_video,
    overlaps_by_default,
    speech_to_video,
)
from .common import CATEGORY, Progress, audio_value, check_interrupt, output_ui_entry, unique_output_path
from .memory import on_device
from .motion import EMOTION_TIMELINE_WIDGET, SAMPLER_WIDGETS, sampler_settings, validate_emotion_timeline

RENDER_WIDGETS = {
    "paste_back": ("BOOLEAN", {"default": True, "tooltip": "Off: output the 512x512 face crop only."}),
    "stitching": (["as released", "on", "off"], {"default": "as released",
                                                 "tooltip": "The stitching network keeps the face aligned with the "
                                                            "shoulders; as released: the release cfg's choice."}),
    "batch_size": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip": "Frames rendered together."}),
    "precision": (list(PRECISIONS), {"default": "auto", "tooltip": "Precision of the warp network and decoder. "
                                      "auto: bf16 on CPUs with native bf16, fp16 on CUDA and MPS, otherwise fp32; "
                                      "fp32: full precision, the reference's exact numbers. Some older cards show "
                                      "black faces with fp16: choose fp32 there."}),
}
FPS_WIDGET = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 60.0, "step": 1.0,
                        "tooltip": "Output frame rate, 10-60 (24, 30, 60, …): the motion is resampled in keypoint "
                                   "space (head pose through its angles), the audio kept. 0: a video source's own "
                                   "rate (Register Portrait's source_fps), else the motion's."})


def validate_fps(fps: float | None):
    """ComfyUI's VALIDATE_INPUTS answer for the fps widget (None: linked, checked when the node runs)."""
    if fps is None or fps == 0 or MIN_FPS <= fps <= MAX_FPS:
        return True
    return f"fps must be 0 (the source's or motion's own) or {MIN_FPS:g}-{MAX_FPS:g}"


def for_portrait(motion, audio, portrait, fps: float):
    """The motion at ``fps`` (0: a video source's own rate when known, else the motion's), and motion and audio cut
    where a video source ends when its loop policy is "shortest"."""
    if fps:
        check_fps(fps)  # a linked rate is only known here
    fps = fps or default_fps(portrait.fps, motion.fps)
    if abs(fps - motion.fps) > 1e-6:
        motion = motion.resample(fps)
    frames = portrait.timeline.output_frames(fps)
    if frames is None or frames >= len(motion):
        return motion, audio
    if audio is not None:
        audio = audio_value(*load_audio(audio).first_frames(frames, fps).original())
    return motion.slice(0, frames), audio


VIDEO_WIDGETS = {
    "filename_prefix": ("STRING", {"default": "ditto/talking_head"}),
    "crf": ("INT", {"default": 18, "min": 0, "max": 51, "tooltip": "h264 quality; lower is better."}),
}


def _render_inputs():
    return {
        "models": ("DITTO_MODELS",),
        "portrait": ("DITTO_PORTRAIT",),
        "motion": ("DITTO_MOTION",),
        **RENDER_WIDGETS,
    }


def _render_options(models, paste_back, stitching, batch_size, precision) -> RenderOptions:
    """Driving as the loaded configuration says, with the widgets' choices."""
    return models.render_options(stitching={"on": True, "off": False}.get(stitching), batch_size=batch_size,
                                 paste_back=paste_back, precision=precision)


def _save_video(filename_prefix: str, write: Callable[[Path], object]):
    """Choose a new mp4 name in the output folder and let ``write(path)`` fill it (atomically: a hidden temporary
    file renamed at the end, so nothing shows while rendering and nothing is left on failure or cancel). Returns
    the node's ui entry and what ``write`` returned."""
    path = unique_output_path(filename_prefix, ".mp4")
    written = write(path)
    return {"images": [output_ui_entry(path)], "animated": [True]}, written


def _frames(models, portrait, motion, paste_back, stitching, batch_size, precision, progress):
    options = _render_options(models, paste_back, stitching, batch_size, precision)
    for frame in models.render(portrait, motion, options, check=check_interrupt):
        progress.update()
        yield frame


def _video(images: torch.Tensor, fps: float, audio):
    from comfy_api.latest import InputImpl, Types

    return InputImpl.VideoFromComponents(
        Types.VideoComponents(images=images, frame_rate=Fraction(fps).limit_denominator(1001), audio=audio)
    )


def _filled(buffer: torch.Tensor | None, total: int, index: int, items: torch.Tensor) -> torch.Tensor:
    """``buffer`` (made on first use for ``total`` items shaped like ``items[0]``) with ``items`` written from
    ``index`` on: one copy of the clip, filled in place."""
    if buffer is None:
        buffer = torch.empty((total, *items.shape[1:]), dtype=torch.float32)
    buffer[index : index + len(items)] = items
    return buffer


class DittoRender:
    DESCRIPTION = (
        "Renders the motion on the portrait: an IMAGE batch (one frame per motion frame, the source's size), the "
        "audio passed through, and a VIDEO for Save Video. Also the rendered 512x512 faces (face_crops) and where "
        "they go (placement): restore or upscale the faces with any IMAGE node, then put them back with Paste "
        "Back. For long clips use Render Video (streams to mp4)."
    )
    CATEGORY = CATEGORY
    FUNCTION = "render"
    RETURN_TYPES = ("IMAGE", "AUDIO", "VIDEO", "IMAGE", "DITTO_FACE_PLACEMENT", "FLOAT")
    RETURN_NAMES = ("frames", "audio", "video", "face_crops", "placement", "fps")
    OUTPUT_TOOLTIPS = (
        "The rendered frames (the portrait's size; the 512x512 faces when paste_back is off).",
        "The audio input, passed through.",
        "The frames and the audio as a VIDEO, for Save Video.",
        "The rendered faces, 512x512, one per frame, before paste-back (as the renderer made them, not rounded): "
        "for a face restorer or upscaler, then Paste Back.",
        "Where each face goes in its frame, for Paste Back.",
        "The frames' rate, for Create Video after Paste Back.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": _render_inputs(), "optional": {"audio": ("AUDIO", {"tooltip": "Muxed into the VIDEO."}),
                                                           "fps": FPS_WIDGET}}

    @classmethod
    def VALIDATE_INPUTS(cls, fps=0.0):
        return validate_fps(fps)

    def render(self, models, portrait, motion, paste_back, stitching, batch_size, precision, audio=None, fps=0.0):
        models = on_device(models)
        motion, audio = for_portrait(motion, audio, portrait, fps)
        options = _render_options(models, paste_back, stitching, batch_size, precision)
        progress = Progress(len(motion))
        images = crops = None
        done = 0
        for faces, placement in render_faces(models.networks, portrait, motion, options, check=check_interrupt):
            crops = _filled(crops, len(motion), done, faces.cpu())
            for frame in faces_to_frames(faces, placement, options.paste_back):
                images = _filled(images, len(motion), done, torch.from_numpy(frame)[None].float().div_(255))
                done += 1
                progress.update()
        placement = FacePlacement.of(portrait, 0, len(motion), fps=motion.fps)
        return (images, audio, _video(images, motion.fps, audio), crops, placement, motion.fps)


class DittoRenderVideo:
    DESCRIPTION = (
        "Renders straight into an mp4 (h264, with the audio) in ComfyUI's output folder, encoding frames as they "
        "are made: memory stays flat however long the audio. Nothing is left behind if it is cancelled."
    )
    CATEGORY = CATEGORY
    FUNCTION = "render"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {**_render_inputs(), **VIDEO_WIDGETS}, "optional": {"audio": ("AUDIO",), "fps": FPS_WIDGET}}

    @classmethod
    def VALIDATE_INPUTS(cls, fps=0.0):
        return validate_fps(fps)

    def render(self, models, portrait, motion, paste_back, stitching, batch_size, precision, filename_prefix, crf,
               audio=None, fps=0.0):
        models = on_device(models)
        motion, audio = for_portrait(motion, audio, portrait, fps)
        clip = load_audio(audio) if audio is not None else None
        frames = _frames(models, portrait, motion, paste_back, stitching, batch_size, precision, Progress(len(motion)))
        ui, _ = _save_video(filename_prefix, lambda path: encode_video(path, frames, motion.fps, clip, crf,
                                                                       overlap=overlaps_by_default(models)))
        return {"ui": ui}


class DittoTalkingHeadVideo:
    DESCRIPTION = (
        "Portrait + speech → mp4 in one pass, the fastest way to a video: each stage (audio encoding, motion "
        "sampling, rendering, video encoding) starts as soon as the one before has something for it, so frames "
        "are made while the audio is still being encoded, and memory stays flat however long the speech. On CUDA "
        "the stages also run side by side. Also returns the motion, to edit and render again."
    )
    CATEGORY = CATEGORY
    FUNCTION = "render"
    RETURN_TYPES = ("DITTO_MOTION",)
    RETURN_NAMES = ("motion",)
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"models": ("DITTO_MODELS",), "portrait": ("DITTO_PORTRAIT",), "audio": ("AUDIO",),
                         **SAMPLER_WIDGETS, **RENDER_WIDGETS, **VIDEO_WIDGETS},
            "optional": {"emotion_timeline": EMOTION_TIMELINE_WIDGET,
                         "fps": ("FLOAT", {**FPS_WIDGET[1], "tooltip": "Output frame rate, 10-60: the motion "
                                           "(sampled at 25) is resampled in keypoint space, the audio kept. 0: a "
                                           "video source's own rate, else 25."})},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, emotion_timeline="", fps=0.0):
        timeline = validate_emotion_timeline(emotion_timeline)
        return timeline if timeline is not True else validate_fps(fps)

    def render(self, models, portrait, audio, emotion, seed, steps, overlap, smoothing, paste_back, stitching,
               batch_size, precision, filename_prefix, crf, emotion_timeline="", fps=0.0):
        speech = SpeechToVideo(models, emotion, seed, steps, overlap, smoothing, paste_back, stitching, batch_size,
                               precision, crf, emotion_timeline, fps)
        job = speech.job(portrait, load_audio(audio))
        ui, motion = speech.write(filename_prefix, job, Progress(job.num_frames))
        return {"ui": {**ui, "ditto_motion": [preview_curves(motion)]}, "result": (motion,)}


@dataclass(frozen=True)
class SpeechJob:
    """One video to make: the portrait, the speech as long as the video will be (a "shortest" video source cuts
    it) and the frame rate."""

    portrait: Portrait
    clip: AudioClip
    fps: float

    @property
    def num_frames(self) -> int:
        """Frames of video it gives: ⌈seconds × fps⌉."""
        return num_video_frames(len(self.clip.samples), self.fps)


class SpeechToVideo:
    """The Talking Head Video widgets' choices, resolved once (the models put on their device, the emotion, sampler
    and render options), for one video or many."""

    def __init__(self, models, emotion, seed, steps, overlap, smoothing, paste_back, stitching, batch_size, precision,
                 crf, emotion_timeline="", fps=0.0):
        self.models = on_device(models)
        self.emotion, self.sampler = sampler_settings(emotion, seed, steps, overlap, smoothing, emotion_timeline)
        self.options = _render_options(self.models, paste_back, stitching, batch_size, precision)
        self.crf, self.fps = crf, fps

    def job(self, portrait: Portrait, clip: AudioClip) -> SpeechJob:
        """The video ``portrait`` speaking ``clip`` will be: at the chosen rate (0: a video source's own, else 25),
        the speech cut where a "shortest" video source ends."""
        if self.fps:
            check_fps(self.fps)  # a linked rate is only known here
        fps = self.fps or default_fps(portrait.fps, FPS)
        return SpeechJob(portrait, clip_for_source(clip, portrait, fps), fps)

    def write(self, filename_prefix: str, job: SpeechJob, progress: Progress):
        """The job's mp4, named after ``filename_prefix`` (written atomically), one ``progress`` step per frame.
        Returns the node's ui entry and the sampled motion."""
        return _save_video(filename_prefix, lambda path: speech_to_video(
            path, self.models, job.portrait, job.clip, self.emotion, self.sampler, self.options, self.crf,
            check=check_interrupt, on_frame=lambda done: progress.update(), fps=job.fps))
