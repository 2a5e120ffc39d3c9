"""Register Portrait: IMAGE → DITTO_PORTRAIT (face found, cropped, eye state, keypoints and appearance)."""

from __future__ import annotations

import logging

from comfy_api.latest import io

from ..ditto_core.portrait.registration import LOOP_POLICIES
from .common import CATEGORY, ESSENTIALS, Progress, check_interrupt
from .memory import on_device
from .types import DittoModels, DittoPortrait

log = logging.getLogger("ComfyUI-Ditto")


class DittoRegisterPortrait(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DittoRegisterPortrait",
            display_name="Register Portrait (Ditto)",
            category=CATEGORY,
            description=(
                "Finds the face in an image (from Load Image or any image-generation graph), crops it the Ditto way "
                "and computes everything rendering needs, once: keypoints, eye state and the 3-D appearance features. "
                "With 'video source' a batch of frames (e.g. Load Video → Get Video Components) is a video to dub: "
                "its head, body and background move as filmed while the mouth follows the speech; frames without a "
                "face (cuts, occlusions) pass through unchanged. Wire the video's fps into source_fps so its timing "
                "is kept."
            ),
            search_aliases=["avatar", "face crop", "source image", "dubbing", "LivePortrait"],
            essentials_category=ESSENTIALS,
            inputs=[
                DittoModels.Input("models"),
                io.Image.Input("image", tooltip="The portrait; a batch is a video source only in 'video source' mode."),
                io.Combo.Input("batch_mode", options=["first image", "video source"], default="first image"),
                io.Int.Input("face_index", default=0, min=0, max=31, tooltip="0 = the largest face."),
                io.Combo.Input("crop", options=["as released", "custom"], default="as released",
                               tooltip="as released: the release cfg's crop (scale, shifts, rotation); custom: the "
                                       "two values below."),
                io.Float.Input("crop_scale", default=2.3, min=1.5, max=4.0, step=0.05,
                               tooltip="custom crop: side relative to the face; larger shows more head."),
                io.Float.Input("crop_vy_ratio", default=-0.125, min=-0.5, max=0.5, step=0.005,
                               tooltip="custom crop: vertical shift; negative includes more forehead."),
                io.Int.Input("max_size", default=0, min=0, max=8192, step=2,
                             tooltip="Longer side of the output video; larger images are scaled down. 0: as "
                                     "released (the release cfg's, 1920)."),
                io.Float.Input("detection_threshold", default=0.5, min=0.05, max=0.99, step=0.01),
                io.Combo.Input("loop", options=list(LOOP_POLICIES), default="ping-pong", optional=True,
                               tooltip="video source shorter than the speech: " + "; ".join(
                                   f"{name}: {what}" for name, what in LOOP_POLICIES.items())),
                io.Float.Input("source_fps", default=0.0, min=0.0, max=240.0, step=0.001, optional=True,
                               tooltip="video source: its frame rate (wire Get Video Components' fps); the renders "
                                       "then default to it. 0: one source frame per output frame."),
            ],
            outputs=[DittoPortrait.Output("portrait")],
        )

    @classmethod
    def execute(cls, models, image, batch_mode, face_index, crop, crop_scale, crop_vy_ratio, max_size,
                detection_threshold, loop="ping-pong", source_fps=0.0) -> io.NodeOutput:
        models = on_device(models)
        frames = image if batch_mode == "video source" else image[:1]
        check_interrupt()
        custom = crop == "custom"
        options = models.registration_options(
            max_size=max_size or None, crop_scale=crop_scale if custom else None,
            crop_vy_ratio=crop_vy_ratio if custom else None, face_index=face_index,
            detection_threshold=detection_threshold, loop=loop)
        progress = Progress(len(frames))

        def frame_done():
            check_interrupt()
            progress.update()

        portrait = models.register(frames, options, fps=source_fps or None, check=frame_done)
        if portrait.is_video:
            log.info("Ditto Register Portrait: %s", portrait.video_summary())
        return io.NodeOutput(portrait)
