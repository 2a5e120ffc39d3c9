"""Paste-back: put a rendered 512² face into the original frame through the crop's inverse transform."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

MASK_INNER_RATIO = 0.9


@lru_cache(maxsize=4)
def blend_mask(size: int = 512, inner_ratio: float = MASK_INNER_RATIO) -> np.ndarray:
    """``[size, size]`` float32: 1 on the centred square of side ⌊size·inner_ratio⌋, falling linearly to 0 across
    the border band and with quarter-disc fall-offs in the corners (the reference's ``get_mask``)."""
    inner = int(size * inner_ratio)
    start = (size - inner) // 2
    stop = start + inner
    band_before, band_after = start, size - stop

    def outside(n_before: int, n_after: int) -> np.ndarray:
        d = np.zeros(size)
        d[:n_before] = np.linspace(1, 0, n_before)
        d[size - n_after :] = np.linspace(0, 1, n_after)
        return d

    dy = outside(band_before, band_after)[:, None]
    dx = outside(band_before, band_after)[None, :]
    return (1 - np.clip(np.sqrt(dx**2 + dy**2), 0, 1)).astype(np.float32)


def paste_back(frame: np.ndarray, render: np.ndarray, crop_to_image: np.ndarray) -> np.ndarray:
    """Blend ``render`` into ``frame``.

    frame: ``[H, W, 3]`` uint8; render: ``[512, 512, 3]`` float in [0, 255]; crop_to_image: ``[3, 3]``.
    Returns ``[H, W, 3]`` uint8: m·render + (1 − m)·frame with m the warped blend mask, truncated like the
    reference. Pixels the warped mask does not reach are the frame's own.
    """
    h, w = frame.shape[:2]
    matrix = crop_to_image[:2].astype(np.float64)
    mask = cv2.warpAffine(blend_mask(render.shape[0]), matrix, (w, h), flags=cv2.INTER_LINEAR).clip(0, 1)
    warped = cv2.warpAffine(render.astype(np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR)
    mask = mask[..., None]
    return np.clip(mask * warped + (1 - mask) * frame, 0, 255).astype(np.uint8)
