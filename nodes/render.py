"""Render nodes: motion + portrait → IMAGE batch (and VIDEO), or straight to an mp4 in the output folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
from comfy_api.latest import io

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
    speech_to_video,
)
from ..ditto_core.video import ENCODERS, NVENC_PRESETS, X264_PRESETS, VideoEncoding, write_mp4
from .common import (
    CATEGORY,
    ESSENTIALS,
    Progress,
    audio_value,
    check_interrupt,
    output_ui_entry,
    unique_output_path,
)
from .memory import on_device
from .motion import emotion_timeline_input, sampler_inputs, sampler_settings, validate_emotion_timeline
from .types import DittoFacePlacement, DittoModels, DittoMotion, DittoPortrait


def render_inputs() -> list:
    """The renderer's widgets: paste_back, stitching, batch_size, precision."""
    return [
        io.Boolean.Input("paste_back", default=True, tooltip="Off: output the 512x512 face crop only."),
        io.Combo.Input("stitching", options=["as released", "on", "off"], default="as released", advanced=True,
                       tooltip="The stitching network keeps the face aligned with the shoulders; as released: the "
                               "release cfg's choice."),
        io.Int.Input("batch_size", default=4, min=1, max=64, advanced=True, tooltip="Frames rendered together."),
        io.Combo.Input("precision", options=list(PRECISIONS), default="auto", advanced=True,
                       tooltip="Precision of the warp network and decoder. auto: bf16 on CPUs with native bf16, fp16 "
                               "on CUDA and MPS, otherwise fp32; fp32: full precision, the reference's exact "
                               "numbers. Some older cards show black faces with fp16: choose fp32 there."),
    ]


def fps_input(tooltip: str = "Output frame rate, 10-60 (24, 30, 60, …): the motion is resampled in keypoint space "
                             "(head pose through its angles), the audio kept. 0: a video source's own rate (Register "
                             "Portrait's source_fps), else the motion's.") -> io.Float.Input:
    return io.Float.Input("fps", default=0.0, min=0.0, max=60.0, step=1.0, optional=True, tooltip=tooltip)


def encoder_inputs() -> list:
    """The encoder's choices: optional, after every other input, so workflows saved before them keep their widget
    values."""
    return [
        io.Combo.Input("encoder", options=list(ENCODERS), default="auto", optional=True, advanced=True,
                       tooltip="auto: the GPU's hardware encoder (h264_nvenc) when the models run on an NVIDIA GPU "
                               "and it can be opened, else libx264 (CPU)."),
        io.Combo.Input("preset", options=["auto", *X264_PRESETS, *NVENC_PRESETS], default="auto", optional=True,
                       advanced=True, tooltip="Encoder speed against file size at the same quality (crf). auto: "
                                              "veryfast for libx264, p4 for NVENC. libx264 takes ultrafast…veryslow, "
                                              "NVENC p1 (fastest)…p7."),
    ]


def video_inputs(filename_prefix: str = "ditto/talking_head", prefix_tooltip: str | None = None) -> list:
    """The mp4 writer's widgets: filename_prefix, crf."""
    return [io.String.Input("filename_prefix", default=filename_prefix, tooltip=prefix_tooltip),
            io.Int.Input("crf", default=18, min=0, max=51, advanced=True, tooltip="h264 quality; lower is better.")]


def validate_fps(fps: float | None):
    """ComfyUI's validate_inputs answer for the fps widget (None: linked, checked when the node runs)."""
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


def _render_node_inputs() -> list:
    return [DittoModels.Input("models"), DittoPortrait.Input("portrait"), DittoMotion.Input("motion"), *render_inputs()]


def render_options_of(models, paste_back, stitching, batch_size, precision) -> RenderOptions:
    """RenderOptions from the render widgets (render_inputs): driving as the loaded configuration says, with the
    widgets' choices."""
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
    options = render_options_of(models, paste_back, stitching, batch_size, precision)
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


class DittoRender(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DittoRender",
            display_name="Render (Ditto)",
            category=CATEGORY,
            description=(
                "Renders the motion on the portrait: an IMAGE batch (one frame per motion frame, the source's size), "
                "the audio passed through, and a VIDEO for Save Video. Also the rendered 512x512 faces (face_crops) "
                "and where they go (placement): restore or upscale the faces with any IMAGE node, then put them back "
                "with Paste Back. For long clips use Render Video (streams to mp4)."
            ),
            search_aliases=["talking head", "animate portrait", "motion to video", "frames"],
            inputs=[*_render_node_inputs(), io.Audio.Input("audio", optional=True, tooltip="Muxed into the VIDEO."),
                    fps_input()],
            outputs=[
                io.Image.Output("frames", tooltip="The rendered frames (the portrait's size; the 512x512 faces when "
                                                  "paste_back is off)."),
                io.Audio.Output("audio", tooltip="The audio input, passed through."),
                io.Video.Output("video", tooltip="The frames and the audio as a VIDEO, for Save Video."),
                io.Image.Output("face_crops", tooltip="The rendered faces, 512x512, one per frame, before paste-back "
                                                      "(as the renderer made them, not rounded): for a face restorer "
                                                      "or upscaler, then Paste Back."),
                DittoFacePlacement.Output("placement", tooltip="Where each face goes in its frame, for Paste Back."),
                io.Float.Output("fps", tooltip="The frames' rate, for Create Video after Paste Back."),
            ],
        )

    @classmethod
    def validate_inputs(cls, fps=0.0):
        return validate_fps(fps)

    @classmethod
    def execute(cls, models, portrait, motion, paste_back, stitching, batch_size, precision, audio=None,
                fps=0.0) -> io.NodeOutput:
        models = on_device(models)
        motion, audio = for_portrait(motion, audio, portrait, fps)
        options = render_options_of(models, paste_back, stitching, batch_size, precision)
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
        return io.NodeOutput(images, audio, _video(images, motion.fps, audio), crops, placement, motion.fps)


class DittoRenderVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DittoRenderVideo",
            display_name="Render Video (Ditto)",
            category=CATEGORY,
            description=(
                "Renders straight into an mp4 (h264, with the audio) in ComfyUI's output folder, encoding frames as "
                "they are made: memory stays flat however long the audio. Nothing is left behind if it is cancelled."
            ),
            search_aliases=["talking head", "save mp4", "motion to video", "long video"],
            inputs=[*_render_node_inputs(), *video_inputs(), io.Audio.Input("audio", optional=True), fps_input(),
                    *encoder_inputs()],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, fps=0.0):
        return validate_fps(fps)

    @classmethod
    def execute(cls, models, portrait, motion, paste_back, stitching, batch_size, precision, filename_prefix, crf,
                audio=None, fps=0.0, encoder="auto", preset="auto") -> io.NodeOutput:
        encoding = VideoEncoding(crf, encoder, preset)
        models = on_device(models)
        motion, audio = for_portrait(motion, audio, portrait, fps)
        clip = load_audio(audio) if audio is not None else None
        frames = _frames(models, portrait, motion, paste_back, stitching, batch_size, precision, Progress(len(motion)))
        ui, _ = _save_video(filename_prefix, lambda path: write_mp4(path, frames, motion.fps, clip, encoding,
                                                                    device_type=models.networks.device.type))
        return io.NodeOutput(ui=ui)


TALKING_HEAD_FPS_TOOLTIP = ("Output frame rate, 10-60: the motion (sampled at 25) is resampled in keypoint space, the "
                            "audio kept. 0: a video source's own rate, else 25.")


def talking_head_inputs(filename_prefix: str = "ditto/talking_head", prefix_tooltip: str | None = None) -> tuple:
    """Talking Head Video's widgets (also Talking Head Batch's): the sampler's, the renderer's and the mp4
    writer's, then the optional emotion timeline and fps (encoder_inputs come last, after any input of the node's
    own). Returns (required widgets, optional widgets)."""
    return ([*sampler_inputs(), *render_inputs(), *video_inputs(filename_prefix, prefix_tooltip)],
            [emotion_timeline_input(), fps_input(TALKING_HEAD_FPS_TOOLTIP)])


def validate_talking_head(emotion_timeline="", fps=0.0):
    """The emotion timeline's and the fps' checks, the first failure's message or True."""
    timeline = validate_emotion_timeline(emotion_timeline)
    return timeline if timeline is not True else validate_fps(fps)


class DittoTalkingHeadVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        widgets, optional = talking_head_inputs()
        return io.Schema(
            node_id="DittoTalkingHeadVideo",
            display_name="Talking Head Video, streamed (Ditto)",
            category=CATEGORY,
            description=(
                "Portrait + speech → mp4 in one pass, the fastest way to a video: each stage (audio encoding, motion "
                "sampling, rendering, video encoding) starts as soon as the one before has something for it, so "
                "frames are made while the audio is still being encoded, and memory stays flat however long the "
                "speech. On CUDA the stages also run side by side. Also returns the motion, to edit and render again."
            ),
            search_aliases=["talking head", "lip sync", "avatar", "speech to video", "audio driven", "portrait "
                            "animation", "dubbing", "image to video"],
            essentials_category=ESSENTIALS,
            inputs=[DittoModels.Input("models"), DittoPortrait.Input("portrait"), io.Audio.Input("audio"), *widgets,
                    *optional, *encoder_inputs()],
            outputs=[DittoMotion.Output("motion", tooltip="The sampled motion, to edit and render again.")],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, emotion_timeline="", fps=0.0):
        return validate_talking_head(emotion_timeline, fps)

    @classmethod
    def execute(cls, models, portrait, audio, emotion, seed, steps, overlap, smoothing, paste_back, stitching,
                batch_size, precision, filename_prefix, crf, emotion_timeline="", fps=0.0, encoder="auto",
                preset="auto") -> io.NodeOutput:
        speech = SpeechToVideo(models, emotion, seed, steps, overlap, smoothing, paste_back, stitching, batch_size,
                               precision, crf, emotion_timeline, fps, encoder, preset)
        job = speech.job(portrait, load_audio(audio))
        ui, motion = speech.write(filename_prefix, job, Progress(job.num_frames))
        return io.NodeOutput(motion, ui={**ui, "ditto_motion": [preview_curves(motion)]})


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
                 crf, emotion_timeline="", fps=0.0, encoder="auto", preset="auto"):
        self.encoding = VideoEncoding(crf, encoder, preset)
        self.models = on_device(models)
        self.emotion, self.sampler = sampler_settings(emotion, seed, steps, overlap, smoothing, emotion_timeline)
        self.options = render_options_of(self.models, paste_back, stitching, batch_size, precision)
        self.fps = fps

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
            path, self.models, job.portrait, job.clip, self.emotion, self.sampler, self.options, self.encoding,
            check=check_interrupt, on_frame=lambda done: progress.update(), fps=job.fps))
