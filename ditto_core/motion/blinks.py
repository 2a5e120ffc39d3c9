"""Blinks the release's way: a short template of eye-keypoint offsets played at random or fixed intervals.

With the release cfg, an image's eyes are not the sampled ones: they are the source's eyes plus a row of
``delta_eye_arr`` (a 15-frame blink; row 0: open), on a schedule of 60-100 open frames between blinks, which keeps
the first and last stretch of a clip open-eyed. Here the schedule is drawn from a ``random.Random`` seeded with the
sampling seed (one seed, one video) and written into the Motion's eye keypoints as ``anchor + offset``, so the
motion holds the blinks it will show: they can be edited (Edit Expression's blinks off) and are driven as the
source's eyes plus that offset.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from .drive import EYE_KEYPOINTS
from .motion import FIELDS

OPEN_MIN, OPEN_MAX = 60, 100  # frames between blinks when the interval is random (the reference's bounds)
EYE_EXP_COLUMNS = [3 * k + c for k in EYE_KEYPOINTS for c in range(3)]


def blink_schedule(num_frames: int, blink_frames: int, open_frames, rng: random.Random) -> tuple[np.ndarray, list]:
    """Template row for each of ``num_frames`` frames (0 when no blink runs) and the frames where blinks start.

    open_frames: −1 no blinks; 0 a random 60-100 frames between blinks; k > 0 fixed; a list cycled. Blinks start
    after ``start`` open frames and stop before the last ``end`` (random or the list's first and last values),
    drawing from ``rng`` in the reference's order.
    """
    rows = np.zeros(num_frames, dtype=np.int64)
    if isinstance(open_frames, int) and open_frames < 0:
        return rows, []
    cycle = [open_frames] if isinstance(open_frames, int) and open_frames > 0 else list(open_frames or [])
    start = cycle[0] if cycle else rng.randint(OPEN_MIN, OPEN_MAX)
    end = cycle[-1] if cycle else rng.randint(OPEN_MIN, OPEN_MAX)
    last_start = num_frames - max(end, blink_frames)
    starts, frame, count = [], start, 1
    while frame < last_start:
        rows[frame : frame + blink_frames] = np.arange(blink_frames)[: num_frames - frame]
        starts.append(frame)
        if cycle:
            gap = cycle[count % len(cycle)]
            count += 1
        else:
            gap = rng.randint(OPEN_MIN, OPEN_MAX)
        frame += blink_frames + gap
    return rows, starts


@dataclass(frozen=True)
class Blinks:
    """A blink template ``[n, 63]`` and the template row of every frame ``[L]`` (frames past L wrap around)."""

    template: torch.Tensor
    rows: np.ndarray
    starts: list

    def offsets(self, start: int, count: int) -> torch.Tensor:
        """Template rows ``[count, 63]`` for frames ``start … start + count − 1``."""
        index = (np.arange(start, start + count) % len(self.rows)).astype(np.int64)
        return self.template[torch.from_numpy(self.rows[index])]

    def metadata(self) -> dict:
        return {"template_frames": len(self.template), "schedule_frames": len(self.rows), "starts": self.starts}


def plan_blinks(template: torch.Tensor, open_frames, configured_frames: int, clip_frames: int | None,
                seed: int) -> Blinks:
    """The blink schedule for a clip of ``clip_frames`` (None: length unknown, as when streaming live).

    As the reference: a schedule of ``configured_frames`` (N_d; −1: 3000) is drawn when it is set up, and when the
    clip's length is known and differs, a second one of that length replaces it (the first one's draws still
    advance the generator).
    """
    rng = random.Random(seed)
    planned = 3000 if configured_frames == -1 else configured_frames
    rows, starts = blink_schedule(planned, len(template), open_frames, rng)
    if clip_frames is not None and clip_frames != configured_frames:
        rows, starts = blink_schedule(clip_frames, len(template), open_frames, rng)
    return Blinks(template.float(), rows, starts)


def add_blinks(frames: torch.Tensor, anchor: torch.Tensor, blinks: Blinks, start: int = 0) -> torch.Tensor:
    """Motion frames ``[m, 265]`` (clip frames ``start …``) with the eye keypoints set to the anchor's plus the
    blink template's offset for each frame."""
    exp = FIELDS["exp"].start
    columns = [exp + c for c in EYE_EXP_COLUMNS]
    out = frames.clone()
    out[:, columns] = anchor[columns] + blinks.offsets(start, len(frames))[:, EYE_EXP_COLUMNS]
    return out
