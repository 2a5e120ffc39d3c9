"""Paste Back node: face crops (after any IMAGE node: a face restorer, an upscaler) back into the frames."""

from __future__ import annotations

import comfy.model_management
import torch
from comfy_api.latest import io

from ..ditto_core.portrait.images import to_rgb_frames
from ..ditto_core.portrait.paste import MASK_FEATHER, MAX_FEATHER, paste_faces
from .common import CATEGORY, Progress, check_interrupt
from .types import DittoFacePlacement


class DittoPasteBack(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DittoPasteBack",
            display_name="Paste Back (Ditto)",
            category=CATEGORY,
            description=(
                "Puts face crops back into the frames. Render's face_crops are the 512x512 faces it drew; pass them "
                "through any IMAGE node (a face restorer such as GFPGAN or CodeFormer, a 2x upscaler, a colour grade) "
                "and this node blends them back where Render took them, at any crop size, with a soft edge (feather) "
                "or your own face mask. Crops that went through no node give exactly Render's own frames. Also "
                "outputs the mask it blended with, at frame size, for compositing."
            ),
            search_aliases=["face restore", "uncrop", "composite face", "paste face"],
            inputs=[
                io.Image.Input("face_crops", tooltip="Render's face_crops, or what an IMAGE node made of them: one "
                                                     "crop per frame, in order, any size (a 2x upscale gives "
                                                     "1024x1024)."),
                DittoFacePlacement.Input("placement", tooltip="Render's placement output: where each face goes."),
                io.Float.Input("feather", default=MASK_FEATHER, min=0.0, max=MAX_FEATHER, step=0.005,
                               tooltip="Width of the soft edge as a fraction of the crop's side: the face fades into "
                                       "the frame across it. 0.05: as Ditto blends; 0: a hard edge. Not used when "
                                       "face_mask is connected."),
                io.Image.Input("frames", optional=True,
                               tooltip="The frames to paste into (one, or one per crop), at the portrait's size. Not "
                                       "connected: the portrait's own frames."),
                io.Mask.Input("face_mask", optional=True,
                              tooltip="Your own blend mask at the crops' size (e.g. from a face segmenter run on the "
                                      "crops), one or one per crop: replaces the soft-edged square."),
            ],
            outputs=[
                io.Image.Output("frames", tooltip="The frames with the faces pasted in (the portrait's size)."),
                io.Mask.Output("mask", tooltip="Where each face was blended, 0-1 at frame size (0 where the frame "
                                               "is untouched), for compositing."),
            ],
        )

    @classmethod
    def execute(cls, face_crops, placement, feather, frames=None, face_mask=None) -> io.NodeOutput:
        masks = None if face_mask is None else face_mask.detach().float()
        if masks is not None and masks.ndim == 2:  # a single mask [h, w]
            masks = masks[None]
        targets = None if frames is None else to_rgb_frames(frames)
        pasted = paste_faces(face_crops.detach().float(), placement, targets, feather, masks, check=check_interrupt,
                             device=comfy.model_management.get_torch_device())
        height, width = placement.frame_size
        images = torch.empty((len(face_crops), height, width, 3), dtype=torch.float32)
        blend = torch.empty((len(face_crops), height, width), dtype=torch.float32)
        progress = Progress(len(face_crops))
        for index, (frame, mask) in enumerate(pasted):
            images[index] = torch.from_numpy(frame).float().div_(255)
            blend[index] = torch.from_numpy(mask)
            progress.update()
        return io.NodeOutput(images, blend)
