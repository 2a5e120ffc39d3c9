"""Paste-back: put rendered faces (512² from the renderer, or crops of any size after an upscaler or face restorer)
into the original frames through the crop's inverse transform, and say where each face goes (FacePlacement)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np
import torch

from .geometry import CROP_SIZE
from .registration import Portrait

MASK_FEATHER = 0.05  # the reference's blend mask: (1 − 0.9) / 2 of the side falls off linearly
MAX_FEATHER = 0.5  # the fall-off bands then meet in the middle
PASTE_BATCH = 8  # faces warped and blended in one call
# grid_sample's bilinear weights sum to 1 within float32 rounding (≈1e-7), so a flat 255 can come out as 254.99998
# and truncate to 254 where the reference's warp gives 255: a level is truncated after adding this guard, far above
# the warp's float error and far below a level.
TRUNCATION_GUARD = 1e-3
# box pixels (over a batch) blended per call on a CPU: the float intermediates of a call stay in the CPU's caches and
# in memory the allocator reuses, where a whole 1080p batch's would be fresh memory, page-faulted in, at every call
CPU_BLEND_PIXELS = 1 << 18


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


@dataclass(frozen=True)
class FrameBox:
    """A rectangle of frame pixels: rows ``top:top + height``, columns ``left:left + width``."""

    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def reach(matrix: np.ndarray, crop_shape: tuple[int, int], frame_size: tuple[int, int]) -> FrameBox:
    """The frame pixels a crop ``crop_shape`` (h, w) warped by ``matrix`` (crop → frame, ``[3, 3]``) can touch:
    a bilinear tap reaches frame pixel p when its crop coordinate lies in (−1, w) × (−1, h), so the box bounds the
    image of that rectangle, clipped to the frame (H, W). Pixels outside it keep the frame's values exactly."""
    height, width = crop_shape
    corners = np.array([[-1, -1, 1], [width, -1, 1], [-1, height, 1], [width, height, 1]], np.float64)
    mapped = corners @ matrix[:2].T
    low = np.maximum(np.floor(mapped.min(axis=0)), 0).astype(int)
    high = np.minimum(np.ceil(mapped.max(axis=0)), np.array(frame_size[::-1]) - 1).astype(int)
    if (high < low).any():
        return FrameBox(0, 0, 0, 0)
    return FrameBox(int(low[1]), int(low[0]), int(high[1] - low[1] + 1), int(high[0] - low[0] + 1))


def common_boxes(boxes: Sequence[FrameBox], frame_size: tuple[int, int]) -> list[FrameBox]:
    """Boxes of one size (the largest height and width among ``boxes``), each covering its own box and moved
    inside the frame (H, W) where it would stick out, so a batch's boxes stack into one tensor."""
    height = max(box.height for box in boxes)
    width = max(box.width for box in boxes)
    return [FrameBox(min(box.top, frame_size[0] - height), min(box.left, frame_size[1] - width), height, width)
            for box in boxes]


def sampling_grid(matrices: np.ndarray, boxes: Sequence[FrameBox], crop_shape: tuple[int, int],
                  device: torch.device) -> torch.Tensor:
    """``[B, h_box, w_box, 2]`` float32 for ``grid_sample(..., align_corners=False)``: for each box pixel, where it
    comes from in the crop (the inverse of ``matrices`` ``[B, 3, 3]`` crop → frame, float64), normalised. Frames
    with the same matrix and box (every frame of a still portrait) share one grid, kept for the next batch."""
    grids = [_grid(matrix.tobytes(), box, tuple(crop_shape), str(device)) for matrix, box in zip(matrices, boxes)]
    return torch.stack(grids) if len({id(g) for g in grids}) > 1 else grids[0].expand(len(grids), -1, -1, -1)


@lru_cache(maxsize=4)  # a still portrait's one grid (a video's change every frame: they are not worth keeping)
def _grid(matrix_bytes: bytes, box: FrameBox, crop_shape: tuple[int, int], device: str) -> torch.Tensor:
    """One box's ``[h_box, w_box, 2]`` grid (see ``sampling_grid``); the matrix as the bytes of a ``[3, 3]``
    float64 array, so that it can be a cache key."""
    inverse = np.linalg.inv(np.frombuffer(matrix_bytes, np.float64).reshape(3, 3))[:2]  # frame → crop, [2, 3]
    # the box's top-left pixel in the crop, and everything normalised to [-1, 1] here (float64), so the device
    # only scales the box's own small coordinates
    origin = inverse @ np.array([box.left, box.top, 1.0])
    scale = np.array([2 / crop_shape[1], 2 / crop_shape[0]])
    linear = inverse[:, :2] * scale[:, None]  # [2, 2]: d(normalised crop) / d(box pixel)
    shift = origin * scale + scale / 2 - 1
    xs = torch.arange(box.width, dtype=torch.float32, device=device)[None, :]
    ys = torch.arange(box.height, dtype=torch.float32, device=device)[:, None]
    return torch.stack([float(linear[axis, 0]) * xs + float(linear[axis, 1]) * ys + float(shift[axis])
                        for axis in range(2)], dim=-1)


def blend_boxes(faces: torch.Tensor, masks: torch.Tensor, grid: torch.Tensor, backgrounds: torch.Tensor,
                with_masks: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Warp faces and their masks into the frame boxes and blend them over ``backgrounds``, all on one device.

    faces: ``[B, h, w, 3]`` float in [0, 1]; masks: ``[B | 1, h, w]`` in [0, 1]; grid: ``[B, H_box, W_box, 2]``
    (``sampling_grid``); backgrounds: ``[B, H_box, W_box, 3]`` uint8. Returns the boxes ``[B, H_box, W_box, 3]``
    uint8, m·face·255 + (1 − m)·background truncated as the reference does (bilinear, zero outside the crop; see
    TRUNCATION_GUARD), and the warped masks ``[B, H_box, W_box]`` float32 (None unless ``with_masks``). On a CPU
    the boxes are blended a band of rows at a time (CPU_BLEND_PIXELS).
    """
    count, height, width = backgrounds.shape[:3]
    boxes = torch.empty_like(backgrounds)
    warped_masks = torch.empty((count, height, width), device=backgrounds.device) if with_masks else None
    # the faces as they lie (channels last, read through a channels-first view): no copy of the crops is made
    faces = faces.permute(0, 3, 1, 2).float()
    masks = masks.float()[:, None].expand(count, -1, -1, -1)
    rows = max(1, CPU_BLEND_PIXELS // (count * width)) if backgrounds.device.type == "cpu" else height
    for top in range(0, height, rows):
        band = slice(top, top + rows)
        boxes[:, band], mask = _blend_band(faces, masks, grid[:, band], backgrounds[:, band])
        if with_masks:
            warped_masks[:, band] = mask
    return boxes, warped_masks


def _blend_band(faces: torch.Tensor, masks: torch.Tensor, grid: torch.Tensor, backgrounds: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One band of ``blend_boxes``: faces ``[B, 3, h, w]``, masks ``[B, 1, h, w]``, grid ``[B, rows, W_box, 2]``,
    backgrounds ``[B, rows, W_box, 3]`` uint8 → the blend ``[B, rows, W_box, 3]`` float (guarded and clamped, to be
    truncated to uint8) and the warped masks ``[B, rows, W_box]``; the blend runs channels last, as the frames
    are."""
    sample = partial(torch.nn.functional.grid_sample, grid=grid, mode="bilinear", padding_mode="zeros",
                     align_corners=False)
    warped_masks = sample(masks).clamp_(0, 1).permute(0, 2, 3, 1)  # [B, rows, W_box, 1]
    blended = backgrounds.float().mul_(1 - warped_masks)  # (1 − m)·background + m·255·face
    blended.addcmul_(warped_masks, sample(faces).permute(0, 2, 3, 1), value=255)
    return blended.add_(TRUNCATION_GUARD).clamp_(0, 255), warped_masks[..., 0]


def check_paste_inputs(faces: np.ndarray | torch.Tensor, placement: FacePlacement, frames: Sequence[np.ndarray] | None,
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
        bad = int((~torch.isfinite(torch.as_tensor(face_masks))).sum())
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


def paste_faces(faces: np.ndarray | torch.Tensor, placement: FacePlacement,
                frames: Sequence[np.ndarray] | None = None, feather: float = MASK_FEATHER,
                face_masks: np.ndarray | torch.Tensor | None = None, check: Callable[[], None] | None = None,
                device: str | torch.device | None = None, with_masks: bool = True,
                batch_size: int = PASTE_BATCH) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Paste each face into its frame; yield ``(frame [H, W, 3] uint8, mask [H, W] float32 in [0, 1])`` per face.

    faces: ``[N, h, w, 3]`` float in [0, 1] (any crop size), an array or a tensor; frames: 1 or N ``[H, W, 3]``
    uint8 frames to paste into (None: the portrait's, by the placement); feather: the blend mask's fall-off band as
    a fraction of the crop side; face_masks: ``[1 | N, h, w]`` in [0, 1], replacing the blend mask. The warp and
    blend run with torch on ``device`` (default: the faces' own device), only inside each face's reach
    (``reach``), ``batch_size`` faces at a time; each frame's box leaves the device once, as uint8, into a copy of
    its frame, so pixels out of the face's reach are the frame's own, bit for bit. ``with_masks`` False yields
    None for the masks (a full-size float mask per frame costs 4 bytes a pixel). Frames without a face come back
    unchanged with an all-zero mask. ``check`` runs before every frame. Raises PasteBackError on inputs that do
    not fit together, before any work.
    """
    check_paste_inputs(faces, placement, frames, face_masks, feather)
    if device is None:
        device = faces.device if isinstance(faces, torch.Tensor) else torch.device("cpu")
    faces = torch.as_tensor(faces, device=device)
    crop_shape = tuple(faces.shape[1:3])
    masks = blend_mask(crop_shape, feather) if face_masks is None else face_masks
    masks = torch.as_tensor(masks, dtype=torch.float32, device=device).reshape(-1, *crop_shape)
    return _pasted(faces, masks, placement, frames, check, with_masks, batch_size)


def _pasted(faces, masks, placement, frames, check, with_masks, batch_size):
    for start in range(0, len(faces), batch_size):
        if check is not None:
            check()
        stop = min(start + batch_size, len(faces))
        for offset, pasted in enumerate(_paste_batch(faces, masks, placement, frames, range(start, stop),
                                                     with_masks)):
            if offset and check is not None:
                check()
            yield pasted


def _paste_batch(faces: torch.Tensor, masks: torch.Tensor, placement: FacePlacement,
                 frames: Sequence[np.ndarray] | None, indices: range, with_masks: bool
                 ) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Frames (and masks) for faces ``indices``: the boxes of all faces that have one warped and blended in one
    call on the faces' device."""
    def pick(items, index):
        return items[index if len(items) > 1 else 0]

    size = placement.frame_size
    out = [(placement.source_image(i) if frames is None else pick(frames, i)).copy() for i in indices]
    out_masks = [np.zeros(size, np.float32) if with_masks else None for _ in indices]
    crop_shape = tuple(faces.shape[1:3])
    matrices = {k: crop_matrix(placement.crop_to_image[i], crop_shape, placement.crop_size)
                for k, i in enumerate(indices) if placement.has_face[i]}
    boxes = {k: reach(m, crop_shape, size) for k, m in matrices.items()}
    rows = [k for k, box in boxes.items() if box.height and box.width]
    if rows:
        shared = common_boxes([boxes[k] for k in rows], size)
        grid = sampling_grid(np.stack([matrices[k] for k in rows]), shared, crop_shape, faces.device)
        backgrounds = torch.from_numpy(np.stack([out[k][box.slices] for k, box in zip(rows, shared)]))
        selected = [indices[k] for k in rows]
        blended, warped_masks = blend_boxes(faces[selected], masks[selected] if len(masks) > 1 else masks, grid,
                                            backgrounds.to(faces.device, non_blocking=True), with_masks)
        blended = blended.cpu().numpy()
        warped_masks = warped_masks.cpu().numpy() if with_masks else None
        for j, (k, box) in enumerate(zip(rows, shared)):
            out[k][box.slices] = blended[j]
            if with_masks:
                out_masks[k][box.slices] = warped_masks[j]
    return list(zip(out, out_masks))
