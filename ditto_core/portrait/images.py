"""Source images in any layout → RGB uint8 frames, resized the way the reference does."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DEFAULT_MAX_SIZE = 1920


class PortraitInputError(ValueError):
    """A portrait input that cannot be used, with what is wrong and what to do."""


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def load_image(path: str | Path) -> np.ndarray:
    """An image file → ``[H, W, 3|4]`` RGB(A) array in its own bit depth (8 or 16 bits)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PortraitInputError(f"portrait image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise PortraitInputError(f"cannot read {path} as an image; give a jpg, png, webp, bmp or tiff file")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return image


def _as_array(image) -> np.ndarray:
    """One image as numpy: a file path, a PIL image, a torch tensor or an array-like."""
    if isinstance(image, (str, Path)):
        return load_image(image)
    if hasattr(image, "getbands") and hasattr(image, "convert"):  # a PIL image
        return np.asarray(image if image.mode in ("RGB", "RGBA", "L", "I;16") else image.convert("RGB"))
    if hasattr(image, "detach"):
        return image.detach().cpu().numpy()
    return np.asarray(image)


def _channels_last(frame: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` (C of 1, 3 or 4, as torch and torchvision hold images) → ``[H, W, C]``."""
    if frame.ndim == 3 and frame.shape[0] in (1, 3, 4) and frame.shape[-1] not in (1, 3, 4):
        return np.moveaxis(frame, 0, -1)
    return frame


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame
    if np.issubdtype(frame.dtype, np.integer) and frame.dtype != np.uint16:
        if frame.min() < 0 or frame.max() > 255:
            raise PortraitInputError(f"integer pixels must be 0-255, got {frame.min()}..{frame.max()} ({frame.dtype})")
        return frame.astype(np.uint8)
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
    """RGB uint8 frames ``[H, W, 3]`` from: an image file path, a PIL image, a numpy array or torch tensor
    (``[H, W]``, ``[H, W, C]`` or ``[C, H, W]``; uint8, uint16, other integers in 0-255, bool, or floats in
    [0, 1]), a ComfyUI IMAGE batch ``[B, H, W, C]``, or a sequence of any of these. All frames must share one
    size."""
    if isinstance(images, (str, Path)) or hasattr(images, "getbands"):
        frames = [_as_array(images)]
    elif hasattr(images, "detach") or isinstance(images, np.ndarray):
        array = _as_array(images)
        frames = list(array) if array.ndim == 4 else [array]
    else:
        frames = [_as_array(f) for f in images]
    if not frames:
        raise PortraitInputError("no image was given")
    for frame in frames:
        if frame.dtype.kind in "USO":
            raise PortraitInputError(f"cannot use a {frame.dtype} array as an image; give a file path, a PIL image, "
                                     f"or pixel values as a numpy array or torch tensor")
    rgb = [_to_rgb(_to_uint8(_channels_last(f))) for f in frames]
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
