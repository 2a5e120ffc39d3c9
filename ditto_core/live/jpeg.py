"""JPEG encoding of the WebSocket's frames, off the render thread: a small pool of threads, each encoding with
torchvision's ``encode_jpeg`` on the CUDA device where the session renders on CUDA and torchvision is installed,
else with OpenCV on the CPU."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from .protocol import FRAME_HEADER


def _cuda_encoder(device: torch.device):
    """torchvision's encoder on ``device`` when it can be used, else None."""
    if device.type != "cuda":
        return None
    try:
        from torchvision.io import encode_jpeg
    except ImportError:
        return None
    return encode_jpeg


class JpegEncoder:
    """Frames ``[H, W, 3]`` uint8 RGB → the WebSocket's binary frame message (index header + JPEG), encoded in a
    pool of ``workers`` threads shared by every session; ``submit`` returns a future of the message."""

    def __init__(self, quality: int = 85, workers: int = 2):
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality must be from 1 to 100, got {quality}")
        self.quality = quality
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ditto-live-jpeg")

    def submit(self, index: int, frame: np.ndarray, device: torch.device) -> Future:
        return self._pool.submit(self._encode, index, frame, device)

    def _encode(self, index: int, frame: np.ndarray, device: torch.device) -> bytes:
        encode_jpeg = _cuda_encoder(device)
        if encode_jpeg is not None:
            image = torch.from_numpy(np.ascontiguousarray(frame)).to(device).permute(2, 0, 1)
            jpeg = encode_jpeg(image, quality=self.quality).cpu().numpy()
        else:
            import cv2

            ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]),
                                    [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                raise RuntimeError("JPEG encoding failed")
        return FRAME_HEADER.pack(index) + jpeg.tobytes()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
