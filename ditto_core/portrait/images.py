"""Source images in any layout → RGB uint8 frames, resized the way the reference does."""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_MAX_SIZE = 1920


class PortraitInputError(ValueError):
    """A portrait input that cannot be used, with what is wrong and what to do."""


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.uint16:
        return (frame.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    if np.issubdtype(frame.dtype, np.floating):
        if not np.isfinite(frame).all():
            raise PortraitInputError("the image contains NaN or infinite values")
        return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if frame.dtype == np.bool_:
        return frame.astype(np.uint8) * 255
    raise PortraitInputError(f"unsupported pixel type {frame.dtype}; give uint8, uint16 or float images in [0, 1]")


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    """[H, W], [H, W, 1], [H, W, 3] or [H, W, 4] → [H, W, 3] (grey replicated, alpha dropped)."""
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[-1] not in (1, 3, 4):
        raise PortraitInputError(f"expected an image of shape [H, W], [H, W, 1|3|4], got {tuple(frame.shape)}")
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3])


def to_rgb_frames(images) -> list[np.ndarray]:
    """An image, a ComfyUI IMAGE batch ``[B, H, W, C]`` float in [0, 1], or a sequence of frames → RGB uint8
    frames ``[H, W, 3]``. All frames must share one size."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    if isinstance(images, np.ndarray):
        frames = list(images) if images.ndim == 4 else [images]
    else:
        frames = [f.detach().cpu().numpy() if hasattr(f, "detach") else np.asarray(f) for f in images]
    if not frames:
        raise PortraitInputError("no image was given")
    rgb = [_to_rgb(_to_uint8(np.asarray(f))) for f in frames]
    sizes = {f.shape for f in rgb}
    if len(sizes) > 1:
        raise PortraitInputError(f"source frames differ in size: {sorted(sizes)}; resize them to one size first")
    if min(rgb[0].shape[:2]) < 2:
        raise PortraitInputError(f"the image is {rgb[0].shape[1]}x{rgb[0].shape[0]} pixels; too small to hold a face")
    return rgb


def fitted_size(height: int, width: int, max_size: int = DEFAULT_MAX_SIZE) -> tuple[int, int]:
    """(height, width) with the long side at most ``max_size`` (aspect kept, rounded) and both sides even."""
    if max_size > 0 and max(height, width) > max_size:
        if height > width:
            height, width = max_size, int(round(width * max_size / height))
        else:
            height, width = int(round(height * max_size / width)), max_size
    return height - height % 2, width - width % 2


def fit_max_size(frame: np.ndarray, max_size: int = DEFAULT_MAX_SIZE) -> np.ndarray:
    """Resize (bilinear) to ``fitted_size`` when that differs from the frame's size."""
    height, width = fitted_size(*frame.shape[:2], max_size)
    if (height, width) == frame.shape[:2]:
        return frame
    return cv2.resize(frame, (width, height))
