"""Paste-back: put rendered faces (512² from the renderer, or crops of any size after an upscaler or face restorer)
into the original frames through the crop's inverse transform, and say where each face goes (FacePlacement)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .geometry import CROP_SIZE, warp
from .registration import Portrait

MASK_FEATHER = 0.05  # the reference's blend mask: (1 − 0.9) / 2 of the side falls off linearly
MAX_FEATHER = 0.5  # the fall-off bands then meet in the middle


class PasteBackError(ValueError):
    """Face crops, masks or frames that do not fit the placement they are pasted with."""


@dataclass(frozen=True, eq=False)
class FacePlacement:
    """Where each of N rendered faces goes.

    crop_to_image: ``[N, 3, 3]`` float32, the crop → image affine of each output frame's source frame (M_c2o, for
    a ``crop_size``² crop); source_frames: ``[N]`` int64, each output frame's index into ``source_images``;
    source_images: ``[F, H, W, 3]`` uint8, the portrait's frames (shared, not copied); has_face: ``[N]`` bool
    (False: no face in that source frame, which is shown unchanged).
    """

    crop_to_image: np.ndarray
    source_frames: np.ndarray
    source_images: np.ndarray
    has_face: np.ndarray
    crop_size: int = CROP_SIZE

    @classmethod
    def of(cls, portrait: Portrait, start: int, stop: int, first_index: int = 0,
           fps: float | None = None) -> FacePlacement:
        """Placement of motion frames ``start:stop`` (at ``fps``) rendered on ``portrait``; ``first_index`` is the
        position of motion frame 0 in a longer stream (as in ``render_frames``)."""
        sources = np.array([portrait.source_frame(first_index + f, fps) for f in range(start, stop)], dtype=np.int64)
        return cls(crop_to_image=portrait.crop_to_image[sources], source_frames=sources,
                   source_images=portrait.images, has_face=portrait.has_face[sources])

    def __len__(self) -> int:
        return len(self.source_frames)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the frames the faces go into."""
        return self.source_images.shape[1:3]

    def source_image(self, index: int) -> np.ndarray:
        """``[H, W, 3]`` uint8: the portrait frame behind output frame ``index``."""
        return self.source_images[self.source_frames[index]]


def check_feather(feather: float) -> None:
    """Raise PasteBackError unless ``feather`` (the blend mask's fall-off band, a fraction of the crop side) is
    usable."""
    if not 0 <= feather <= MAX_FEATHER:
        raise PasteBackError(f"feather must be between 0 (a hard edge) and {MAX_FEATHER} (the fall-off reaches the "
                             f"crop's centre), got {feather}; the reference's soft edge is {MASK_FEATHER}")


@lru_cache(maxsize=8)
def blend_mask(size: int | tuple[int, int] = CROP_SIZE, feather: float = MASK_FEATHER) -> np.ndarray:
    """``[h, w]`` float32 for a crop of side ``size`` or of ``size = (h, w)``: 1 on the centred rectangle of
    ⌊side·(1 − 2·feather)⌋ pixels per axis, falling linearly to 0 across the border bands, with quarter-disc
    fall-offs in the corners (the reference's ``get_mask`` at feather 0.05). feather 0: all ones (a hard edge)."""
    check_feather(feather)
    height, width = (size, size) if isinstance(size, int) else size

    def outside(n: int) -> np.ndarray:
        """Per pixel along one axis: 0 inside, rising to 1 at the crop's edge."""
        inner = int(n * (1 - 2 * feather))
        start = (n - inner) // 2
        stop = start + inner
        d = np.zeros(n)
        d[:start] = np.linspace(1, 0, start)
        d[stop:] = np.linspace(0, 1, n - stop)
        return d

    dy, dx = outside(height)[:, None], outside(width)[None, :]
    return (1 - np.clip(np.sqrt(dx**2 + dy**2), 0, 1)).astype(np.float32)


def crop_matrix(crop_to_image: np.ndarray, crop_shape: tuple[int, int], crop_size: int = CROP_SIZE) -> np.ndarray:
    """``[3, 3]`` float64: the affine from a ``crop_shape`` (h, w) crop to the image, for a crop that is the
    ``crop_size``² crop of ``crop_to_image`` resized (pixel centres aligned, as ``cv2.resize`` does). The
    ``crop_size``² crop itself gets ``crop_to_image`` unchanged."""
    height, width = crop_shape
    sx, sy = crop_size / width, crop_size / height
    resized_to_crop = np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1]])
    return crop_to_image.astype(np.float64) @ resized_to_crop


def frame_mask(crop_mask: np.ndarray, crop_to_image: np.ndarray, frame_size: tuple[int, int],
               crop_size: int = CROP_SIZE) -> np.ndarray:
    """``[H, W]`` float32 in [0, 1]: a crop's mask ``[h, w]`` warped into the frame (0 where the crop does not
    reach). frame_size: (H, W)."""
    matrix = crop_matrix(crop_to_image, crop_mask.shape, crop_size)
    return warp(crop_mask.astype(np.float32), matrix, frame_size[::-1]).clip(0, 1)


def paste_back(frame: np.ndarray, render: np.ndarray, crop_to_image: np.ndarray, mask: np.ndarray | None = None,
               crop_size: int = CROP_SIZE) -> np.ndarray:
    """Blend ``render`` into ``frame``.

    frame: ``[H, W, 3]`` uint8; render: ``[h, w, 3]`` float in [0, 255], the ``crop_size``² crop or a resized copy
    of it; crop_to_image: ``[3, 3]`` for the ``crop_size``² crop; mask: ``[H, W]`` in [0, 1] (``frame_mask``), None:
    the reference's blend mask. Returns ``[H, W, 3]`` uint8: m·render + (1 − m)·frame, truncated like the
    reference. Pixels the mask does not reach are the frame's own.
    """
    size = frame.shape[:2]
    if mask is None:
        mask = frame_mask(blend_mask(render.shape[:2]), crop_to_image, size, crop_size)
    warped = warp(render.astype(np.float32), crop_matrix(crop_to_image, render.shape[:2], crop_size), size[::-1])
    mask = mask[..., None]
    return np.clip(mask * warped + (1 - mask) * frame, 0, 255).astype(np.uint8)


def check_paste_inputs(faces: np.ndarray, placement: FacePlacement, frames: Sequence[np.ndarray] | None,
                       face_masks: np.ndarray | None, feather: float) -> None:
    """Raise PasteBackError, saying what to change, unless the inputs of ``paste_faces`` fit together."""
    check_feather(feather)
    if faces.ndim != 4 or faces.shape[-1] != 3:
        raise PasteBackError(f"face crops must be a batch of RGB images [N, height, width, 3], got shape "
                             f"{tuple(faces.shape)}")
    count, (crop_h, crop_w) = len(faces), faces.shape[1:3]
    if count != len(placement):
        raise PasteBackError(
            f"{count} face crops for a placement of {len(placement)} frames: every node between Render and Paste "
            f"Back must keep one crop per frame, in order (a node that selects, drops or repeats images changes the "
            f"count), and the crops and the placement must come from the same Render")
    if face_masks is not None:
        if face_masks.ndim != 3:
            raise PasteBackError(f"face masks must be a batch [N, height, width], got shape {tuple(face_masks.shape)}")
        if len(face_masks) not in (1, count):
            raise PasteBackError(f"{len(face_masks)} face masks for {count} face crops: give one mask (used for every "
                                 f"crop) or one per crop")
        if face_masks.shape[1:] != (crop_h, crop_w):
            raise PasteBackError(
                f"the face mask is {face_masks.shape[2]}x{face_masks.shape[1]} but the face crops are "
                f"{crop_w}x{crop_h}: make the mask from the crops as they arrive here (after any upscale), or "
                f"resize it to {crop_w}x{crop_h}")
        bad = int((~np.isfinite(face_masks)).sum())
        if bad:
            raise PasteBackError(f"the face mask holds {bad} NaN or infinite value(s); a mask is 0 (the frame) to 1 "
                                 f"(the rendered face): fix the node that made it")
    if frames is not None:
        height, width = placement.frame_size
        if len(frames) not in (1, count):
            raise PasteBackError(f"{len(frames)} frames for {count} face crops: give one frame (used for every crop), "
                                 f"one per crop, or none (the portrait's own frames)")
        if frames[0].shape[:2] != (height, width):
            raise PasteBackError(
                f"the frames are {frames[0].shape[1]}x{frames[0].shape[0]} but the faces were placed in "
                f"{width}x{height} frames (the registered portrait's size): give frames of that size, or none "
                f"(the portrait's own frames)")


def paste_faces(faces: np.ndarray, placement: FacePlacement, frames: Sequence[np.ndarray] | None = None,
                feather: float = MASK_FEATHER, face_masks: np.ndarray | None = None,
                check: Callable[[], None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Paste each face into its frame; yield ``(frame [H, W, 3] uint8, mask [H, W] float32 in [0, 1])`` per face.

    faces: ``[N, h, w, 3]`` float in [0, 1] (any crop size); frames: 1 or N ``[H, W, 3]`` uint8 frames to paste
    into (None: the portrait's, by the placement); feather: the blend mask's fall-off band as a fraction of the
    crop side; face_masks: ``[1 | N, h, w]`` in [0, 1], replacing the blend mask. Frames without a face come back
    unchanged with an all-zero mask. ``check`` runs before every frame. Raises PasteBackError on inputs that do
    not fit together, before any work.
    """
    check_paste_inputs(faces, placement, frames, face_masks, feather)
    return _pasted(faces, placement, frames, feather, face_masks, check)


def _pasted(faces, placement, frames, feather, face_masks, check):
    def pick(items, index):
        return items[index if len(items) > 1 else 0]

    crop_mask = blend_mask(faces.shape[1:3], feather)
    for index, face in enumerate(faces):
        if check is not None:
            check()
        frame = placement.source_image(index) if frames is None else pick(frames, index)
        if not placement.has_face[index]:
            yield frame.copy(), np.zeros(frame.shape[:2], np.float32)
            continue
        mask = frame_mask(crop_mask if face_masks is None else pick(face_masks, index),
                          placement.crop_to_image[index], frame.shape[:2], placement.crop_size)
        render = face * np.float32(255)
        yield paste_back(frame, render, placement.crop_to_image[index], mask, placement.crop_size), mask
