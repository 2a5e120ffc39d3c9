"""Face editing nodes: Edit Face (semantic expression controls over time, and a reference face), Motion from
Image (the pose and expression of the face in a picture) and Preview Frame (one frame, as Render makes it)."""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from ..ditto_core.motion.face import (
    FACE_CONTROLS,
    FaceEditError,
    apply_reference,
    edit_face,
    parse_face_keyframes,
)
from .common import CATEGORY, Progress, check_interrupt
from .memory import on_device
from .motion import motion_schema, with_preview
from .render import render_inputs, render_options_of
from .types import DittoModels, DittoMotion, DittoPortrait

REFERENCE_TAKES = {
    "expression": ("expression",),
    "expression and mouth": ("expression", "mouth"),
    "mouth": ("mouth",),
    "pose": ("pose",),
    "pose and expression": ("pose", "expression"),
    "everything": ("pose", "expression", "mouth"),
}
KEYFRAMES_TOOLTIP = (
    "Amounts that change over the clip, one control per line, replacing that control's slider: name = "
    "seconds:value, …, linear between keyframes and held before the first and after the last. E.g.\n"
    "smile = 0:0, 1.5:1, 3:0\neyebrows = 3:0, 3.5:1\nreference = 0:0, 2:1 (the reference's amount)")


def validate_keyframes(keyframes: str | None):
    """ComfyUI's validate_inputs answer for the keyframes text: True or what is wrong (None: linked)."""
    if keyframes:
        try:
            parse_face_keyframes(keyframes)
        except FaceEditError as exc:
            return str(exc)
    return True


class DittoEditFace(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        sliders = [io.Float.Input(name, default=0.0, min=-3.0, max=3.0, step=0.05,
                                  tooltip=f"{control.description}. 0: unchanged; 1: clear, natural; 1.5: strong.")
                   for name, control in FACE_CONTROLS.items()]
        return motion_schema(
            "DittoEditFace", "Edit Face (Ditto)",
            "Makes the face smile, raise or knit its eyebrows, wink, open or close its eyes, shape its mouth (aaa, "
            "eee, woo) or move its pupils, over the whole clip (the sliders) or changing over time (keyframes); and "
            "can take a reference face's expression, mouth or pose (Motion from Image, a saved expression). Edits "
            "add to the speech's motion, to each other and to blinks. Check a frame with Preview Frame.",
            [DittoMotion.Input("motion"), *sliders,
             io.String.Input("keyframes", default="", multiline=True, optional=True, tooltip=KEYFRAMES_TOOLTIP),
             DittoMotion.Input("reference", optional=True,
                               tooltip="A face to take on: Motion from Image, or a saved expression (Load Motion). "
                                       "A sequence plays at its own rate and holds its last frame."),
             io.Combo.Input("reference_takes", options=list(REFERENCE_TAKES), default="expression", optional=True,
                            tooltip="What the reference gives: expression (all but the lips), mouth (the lips' "
                                    "shape, on top of the speech), pose (the head's angles), or a mix."),
             io.Float.Input("reference_amount", default=1.0, min=0.0, max=2.0, step=0.05, optional=True,
                            tooltip="How far toward the reference, from the face the motion drives from; 1: all "
                                    "the way. A 'reference = …' keyframes line replaces it.")],
            search_aliases=["expression editor", "smile", "eyebrows", "wink", "blink", "face edit", "aaa eee woo",
                            "pupil", "gaze"],
        )

    @classmethod
    def validate_inputs(cls, keyframes=""):
        return validate_keyframes(keyframes)

    @classmethod
    def execute(cls, motion, smile, eyebrows, wink_left, wink_right, eyes_open, mouth_aaa, mouth_eee, mouth_woo,
                pupil_x, pupil_y, keyframes="", reference=None, reference_takes="expression",
                reference_amount=1.0) -> io.NodeOutput:
        sliders = dict(smile=smile, eyebrows=eyebrows, wink_left=wink_left, wink_right=wink_right,
                       eyes_open=eyes_open, mouth_aaa=mouth_aaa, mouth_eee=mouth_eee, mouth_woo=mouth_woo,
                       pupil_x=pupil_x, pupil_y=pupil_y)
        amounts = {**sliders, **parse_face_keyframes(keyframes or "")}
        reference_amount = amounts.pop("reference", reference_amount)
        if reference is not None:
            motion = apply_reference(motion, reference, reference_amount, REFERENCE_TAKES[reference_takes])
        return with_preview(edit_face(motion, **amounts))


class DittoMotionFromImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return motion_schema(
            "DittoMotionFromImage", "Motion from Image (Ditto)",
            "The head pose and expression of the face in a picture (a photo, an image-generation output): a "
            "reference for Edit Face, an expression to save, or, from the portrait itself, a still to edit and "
            "preview. Each image of a batch is one frame (25 fps).",
            [DittoModels.Input("models"), io.Image.Input("image", tooltip="One picture or a batch (a sequence)."),
             io.Float.Input("hold_seconds", default=0.0, min=0.0, max=600.0, step=0.5,
                            tooltip="Each image's face held this long, to keyframe Edit Face over a still; 0: one "
                                    "frame per image.")],
            search_aliases=["expression from photo", "face from image", "sample image expression", "still"],
        )

    @classmethod
    def execute(cls, models, image, hold_seconds=0.0) -> io.NodeOutput:
        models = on_device(models)
        progress = Progress(len(image))
        motion = None
        for picture in image:
            check_interrupt()
            face = models.motion_of_image(picture)
            face = face.held(max(1, round(hold_seconds * face.fps)))
            motion = face if motion is None else motion.concat(face)
            progress.update()
        return with_preview(motion)


class DittoPreviewFrame(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DittoPreviewFrame", display_name="Preview Frame (Ditto)", category=CATEGORY,
            description="One frame of the motion on the portrait, exactly as Render makes it with the same settings, "
                        "in the time of one render batch: dial in Edit Face on a still before rendering the clip.",
            search_aliases=["preview", "still", "single frame", "expression preview"],
            inputs=[DittoModels.Input("models"), DittoPortrait.Input("portrait"), DittoMotion.Input("motion"),
                    io.Float.Input("seconds", default=0.0, min=0.0, max=36000.0, step=0.04,
                                   tooltip="When in the clip; past the end shows the last frame."),
                    *render_inputs()],
            outputs=[io.Image.Output("image", tooltip="The frame, as an IMAGE of one.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, models, portrait, motion, seconds, paste_back, stitching, batch_size,
                precision) -> io.NodeOutput:
        models = on_device(models)
        index = min(round(seconds * motion.fps), len(motion) - 1)
        options = render_options_of(models, paste_back, stitching, batch_size, precision)
        frame = models.render_frame(portrait, motion, index, options)
        image = torch.from_numpy(frame).float().div(255)[None]
        return io.NodeOutput(image, ui=ui.PreviewImage(image, cls=cls))


NODES = (DittoEditFace, DittoMotionFromImage, DittoPreviewFrame)
