"""Rendering: Motion + Portrait → frames, streamed in small batches so any length renders in constant memory."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .keypoints import bins_to_degrees
from .motion.drive import DriveOptions, driving_keypoints
from .motion.motion import Motion
from .networks import DittoNetworks
from .portrait.geometry import CROP_SIZE, warp
from .portrait.paste import FacePlacement, paste_faces
from .portrait.registration import Portrait, source_appearance
from .precision import DeviceDescription, check_precision, precision_plan


@dataclass(frozen=True)
class RenderOptions:
    batch_size: int = 4
    paste_back: bool = True  # False: return the 512² face crops
    precision: str = "auto"  # auto | fp32 | bf16 | fp16: the warp network's and decoder's (see precision.py)
    drive: DriveOptions = field(default_factory=DriveOptions)

    def __post_init__(self):
        check_precision(self.precision)


@dataclass
class RenderBatch:
    """One batch's warp-network inputs on the device (``appearance [B, 32, 16, 64, 64]``, source and driving
    keypoints ``x_s``, ``x_d [B, 21, 3]``), the source frames they come from and where the faces go."""

    appearance: torch.Tensor
    x_s: torch.Tensor
    x_d: torch.Tensor
    sources: list[int]
    placement: FacePlacement

    def __len__(self) -> int:
        return len(self.sources)


def render_batches(
    networks: DittoNetworks,
    portrait: Portrait,
    motion: Motion,
    options: RenderOptions = RenderOptions(),
    start: int = 0,
    stop: int | None = None,
    check: Callable[[], None] | None = None,
    first_index: int = 0,
) -> Iterator[RenderBatch]:
    """The batches of motion frames ``start:stop`` ready for :func:`decode_batches` (driving keypoints made and
    stitched). ``check`` runs before every batch; ``first_index``: the position of motion frame 0 in a longer
    stream (chooses the frame of a source video, at the motion's fps)."""
    if options.batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {options.batch_size}")
    device = networks.device
    stop = len(motion) if stop is None else min(stop, len(motion))
    source = portrait.keypoints
    yaw_s = bins_to_degrees(source["yaw"][:1]).item()
    pitch_s = bins_to_degrees(source["pitch"][:1]).item()
    x_s_all = portrait.source_keypoints()
    if portrait.appearance is not None:  # an image's appearance volume (8 MB) goes to the device once
        portrait = replace(portrait, appearance=portrait.appearance.to(device))
    for batch_start in range(start, stop, options.batch_size):
        if check is not None:
            check()
        batch_stop = min(batch_start + options.batch_size, stop)
        frames = list(range(batch_start, batch_stop))
        placement = FacePlacement.of(portrait, batch_start, batch_stop, first_index, motion.fps)
        sources = placement.source_frames.tolist()
        _, x_d = driving_keypoints(
            source, (yaw_s, pitch_s), motion, frames, sources, portrait.is_video, options.drive
        )
        x_s = x_s_all[sources]
        with torch.inference_mode():
            x_s, x_d = x_s.to(device), x_d.to(device)
            if options.drive.stitching:
                x_d = networks.stitch_network(x_s, x_d)
            appearance = source_appearance(portrait, sources, networks.appearance_extractor, device)
        yield RenderBatch(appearance, x_s, x_d, sources, placement)


def decode_batches(networks: DittoNetworks, precision: str, batches: list[RenderBatch]) -> list[torch.Tensor]:
    """The faces ``[B, 512, 512, 3]`` float32 in [0, 1] of each batch, tensors on the networks' device, from one
    warp-network and decoder call for all of them (several sessions' batches at once); a frame without a face is
    left as rendered (see :func:`finish_faces`)."""
    device = networks.device
    plan = precision_plan(DeviceDescription.of(device), precision)
    with torch.inference_mode():
        appearance = torch.cat([b.appearance for b in batches]) if len(batches) > 1 else batches[0].appearance
        x_s = torch.cat([b.x_s for b in batches])
        x_d = torch.cat([b.x_d for b in batches])
        with plan.autocast("warp_network", device.type):
            warped = networks.warp_network(appearance, x_s, x_d)
        with plan.autocast("decoder", device.type):
            faces = networks.decoder(warped)
        faces = faces.float().clamp_(0, 1).permute(0, 2, 3, 1)
    return list(faces.split([len(b) for b in batches]))


@torch.inference_mode()  # faces are inference tensors: updated in place only inside it
def finish_faces(portrait: Portrait, batch: RenderBatch, faces: torch.Tensor) -> torch.Tensor:
    """``faces`` with each frame whose source has no face replaced by that source frame's own crop."""
    for index in np.flatnonzero(~batch.placement.has_face):
        source = batch.sources[index]
        crop = warp(portrait.images[source], portrait.image_to_crop[source], CROP_SIZE)
        faces[index] = torch.from_numpy(crop).to(faces.device) / 255
    return faces


def render_faces(
    networks: DittoNetworks, portrait: Portrait, motion: Motion, options: RenderOptions = RenderOptions(), **batches
) -> Iterator[tuple[torch.Tensor, FacePlacement]]:
    """Yield, per batch of motion frames ``start:stop``, the rendered faces ``[B, 512, 512, 3]`` float32 in [0, 1]
    (the decoder's output, not quantised, a tensor on the networks' device) and where they go (a FacePlacement of
    B frames). ``batches``: ``start``, ``stop``, ``check`` (runs before every batch, e.g. to raise on user
    interrupt) and ``first_index`` (the position of motion frame 0 in a longer stream: chooses the frame of a
    source video, at the motion's fps), as for :func:`render_batches`. A source frame without a face gets its own
    crop, not a rendered face. ``options.paste_back`` is not used here."""
    for batch in render_batches(networks, portrait, motion, options, **batches):
        (faces,) = decode_batches(networks, options.precision, [batch])
        yield finish_faces(portrait, batch, faces), batch.placement


def faces_to_frames(faces: torch.Tensor, placement: FacePlacement, paste: bool = True) -> Iterator[np.ndarray]:
    """Frames ``[H, W, 3]`` uint8 with ``faces`` (``[B, h, w, 3]`` float in [0, 1], on any device) pasted back by
    the placement on the faces' device (the reference's blend), or with ``paste`` False the faces themselves as
    ``[h, w, 3]`` uint8 (truncated)."""
    if paste:
        for frame, _ in paste_faces(faces, placement, with_masks=False):
            yield frame
    else:
        yield from (faces * 255).to(torch.uint8).cpu().numpy()


def render_frames(
    networks: DittoNetworks, portrait: Portrait, motion: Motion, options: RenderOptions = RenderOptions(), **batches
) -> Iterator[np.ndarray]:
    """Yield frames ``[H, W, 3]`` uint8 (the source's size; ``[512, 512, 3]`` without paste-back) for motion
    frames ``start:stop``; ``batches``: ``start``, ``stop``, ``check`` and ``first_index`` as for ``render_faces``.
    Source frames without a face are shown unchanged."""
    for faces, placement in render_faces(networks, portrait, motion, options, **batches):
        yield from faces_to_frames(faces, placement, options.paste_back)


def render_one(networks: DittoNetworks, portrait: Portrait, motion: Motion, index: int,
               options: RenderOptions = RenderOptions()) -> np.ndarray:
    """Frame ``index`` of ``render_frames(networks, portrait, motion, options)`` alone: ``[H, W, 3]`` uint8.

    Batched convolutions round differently by batch size and position in the batch, so the batch the full render
    puts the frame in is rendered as it is, and the frame taken from it: equal to the full render's frame exactly,
    at the cost of one batch (one frame's work at batch size 1)."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"the frame index must be a whole number, got {index!r}")
    if not 0 <= index < len(motion):
        raise IndexError(f"frame {index} is outside the motion's {len(motion)} frames (0 to {len(motion) - 1})")
    batch_start = index - index % options.batch_size
    frames = render_frames(networks, portrait, motion, options, start=batch_start,
                           stop=min(batch_start + options.batch_size, len(motion)))
    return next(itertools.islice(frames, index - batch_start, None))
