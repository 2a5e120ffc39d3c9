"""One render scheduler per device: the render batches of every live session in one warp-network/decoder call.

Each session's worker prepares its batches (driving keypoints, stitching) and submits them; the scheduler's thread
takes, round-robin over the sessions with work waiting, at most one batch per session per call (so a session that
queued many batches cannot starve one that queued few), up to ``max_frames`` frames, decodes them together and
hands each session its faces. A session's frames equal those it gets alone up to the rounding of a batched
convolution (within precision.py's bound). The scheduler also measures what a frame costs, for admission.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import numpy as np

from ..audio.clip import FPS
from ..render import RenderBatch, decode_batches, faces_to_frames, finish_faces, render_batches

Decode = Callable[[object, str, list[RenderBatch]], list[np.ndarray]]


class FrameCost:
    """A running estimate (exponential mean) of the device seconds one frame costs: rendering as the scheduler
    measures it plus the motion sampling the sessions report."""

    WEIGHT = 0.2  # of the newest measurement

    def __init__(self):
        self.render_s: float | None = None
        self.sampling_s: float | None = None
        self._lock = threading.Lock()

    def _mix(self, old: float | None, new: float) -> float:
        return new if old is None else (1 - self.WEIGHT) * old + self.WEIGHT * new

    def add_render(self, seconds: float, frames: int) -> None:
        with self._lock:
            self.render_s = self._mix(self.render_s, seconds / frames)

    def add_sampling(self, seconds: float, frames: int) -> None:
        if frames:
            with self._lock:
                self.sampling_s = self._mix(self.sampling_s, seconds / frames)

    def realtime_sessions(self, headroom: float = 0.9) -> int | None:
        """How many sessions this device keeps at 25 frames/s, by the costs measured so far (None: nothing
        measured yet)."""
        with self._lock:
            if self.render_s is None:
                return None
            per_frame = self.render_s + (self.sampling_s or 0.0)
        return int(headroom / (per_frame * FPS))


class RenderScheduler:
    """Batches the live sessions' render batches on one device (see the module's docstring). ``decode``: the
    function that computes several batches in one call (``render.decode_batches``; tests give a stand-in)."""

    def __init__(self, max_frames: int = 32, decode: Decode = decode_batches):
        if max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames}")
        self.max_frames = max_frames
        self.decode = decode
        self.cost = FrameCost()
        self._queues: OrderedDict[object, deque] = OrderedDict()  # owner → (networks, precision, batch, future)
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ditto-live-render", daemon=True)
        self._thread.start()

    def submit(self, owner, networks, precision: str, batch: RenderBatch) -> Future:
        """Queue ``batch`` for ``owner`` (any hashable: one per session); the future holds its faces."""
        future: Future = Future()
        with self._wake:
            if self._closed:
                raise RuntimeError("the render scheduler is closed")
            self._queues.setdefault(owner, deque()).append((networks, precision, batch, future))
            self._wake.notify()
        return future

    def forget(self, owner) -> None:
        """Drop what ``owner`` still has queued (its session has ended)."""
        with self._wake:
            for *_, future in self._queues.pop(owner, ()):
                future.cancel()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _next_call(self) -> list[tuple]:
        """Round-robin: one batch from each owner in turn (the one served first moves to the back), all for the
        same networks and precision, up to ``max_frames`` frames (at least one batch)."""
        taken, frames = [], 0
        for owner in list(self._queues):
            entries = self._queues[owner]
            networks, precision, batch, _ = entries[0]
            if taken and ((networks, precision) != taken[0][:2] or frames + len(batch) > self.max_frames):
                continue
            taken.append(entries.popleft())
            frames += len(batch)
            self._queues.move_to_end(owner)
            if not entries:
                del self._queues[owner]
        return taken

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._queues or self._closed)
                if self._closed:
                    for entries in self._queues.values():
                        for *_, future in entries:
                            future.cancel()
                    self._queues.clear()
                    return
                taken = self._next_call()
            live = [entry for entry in taken if entry[3].set_running_or_notify_cancel()]
            if not live:
                continue
            networks, precision = live[0][:2]
            began = time.perf_counter()
            try:
                faces = self.decode(networks, precision, [entry[2] for entry in live])
            except BaseException as exc:  # each session waiting on this call is told
                for entry in live:
                    entry[3].set_exception(exc)
                continue
            self.cost.add_render(time.perf_counter() - began, sum(len(entry[2]) for entry in live))
            for entry, result in zip(live, faces):
                entry[3].set_result(result)

    def render_frames(self, owner, networks, portrait, motion, options, check=None, first_index: int = 0,
                      depth: int = 2) -> Iterator[np.ndarray]:
        """``render.render_frames`` through the scheduler: up to ``depth`` batches of this session in flight, so
        the device is not idle while the session prepares its next batch or pastes back the last one."""
        pending: deque = deque()
        try:
            for batch in render_batches(networks, portrait, motion, options, check=check, first_index=first_index):
                pending.append((batch, self.submit(owner, networks, options.precision, batch)))
                if len(pending) >= depth:
                    yield from self._finish(portrait, options, *pending.popleft())
            while pending:
                yield from self._finish(portrait, options, *pending.popleft())
        finally:
            for _, future in pending:
                future.cancel()

    @staticmethod
    def _finish(portrait, options, batch: RenderBatch, future: Future) -> Iterator[np.ndarray]:
        faces = finish_faces(portrait, batch, future.result())
        yield from faces_to_frames(faces, batch.placement, options.paste_back)
