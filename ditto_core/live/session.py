"""One live session's worker: a thread fed 16-kHz samples that makes frames and hands them to the event loop."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from ..audio.clip import FPS, SAMPLE_RATE
from .protocol import LiveError, StartRequest, _Stopped

if TYPE_CHECKING:
    from .service import LiveService

log = logging.getLogger("ditto.live")

_END = object()
_STOP = object()


@dataclass
class _Timeline:
    """When things happened in one session (perf_counter seconds), for the ``done`` figures."""

    first_audio: float | None = None  # the first audio byte received
    arrivals: deque = field(default_factory=deque)  # (input seconds received so far, when), oldest first
    first_frame_sent: float | None = None
    last_frame_sent: float | None = None
    lags: list = field(default_factory=list)  # per frame: sent − arrival of the audio it shows
    split: dict = field(default_factory=dict)  # the first frame: when its audio was there, taken, sampled

    def audio_arrival(self, seconds: float) -> float | None:
        """When the audio up to ``seconds`` had arrived (asked for in increasing order: older entries go)."""
        while len(self.arrivals) > 1 and self.arrivals[0][0] < seconds - 1e-9:
            self.arrivals.popleft()
        return self.arrivals[0][1] if self.arrivals else None


class LiveSession:
    """One client's session: a worker thread fed 16-kHz samples, its frames handed to the event loop.

    ``deliver(index, frame, device)`` turns each frame into what goes on the outbox (the WebSocket's JPEG
    message, WebRTC's raw frame). Fed until ``end``, it is a clip; fed forever (silence included), a conversation.
    """

    def __init__(self, service: "LiveService", start: StartRequest, loop: asyncio.AbstractEventLoop,
                 outbox: asyncio.Queue, timeline: _Timeline, deliver: Callable[[int, np.ndarray, object], tuple]):
        self.service, self.start, self.loop, self.outbox, self.timeline = service, start, loop, outbox, timeline
        self.deliver = deliver
        self.inbox: queue.Queue = queue.Queue()
        self.stopped = threading.Event()
        self.credits = threading.Semaphore(service.settings.max_unsent_frames)
        self.samples_fed = 0
        self.samples_done = 0
        self.frames_made = 0
        self.thread = threading.Thread(target=self._run, name="ditto-live-session", daemon=True)

    # called on the event loop
    def feed(self, samples: np.ndarray, arrived: float) -> None:
        self.samples_fed += len(samples)
        self.inbox.put((samples, arrived))

    def end(self, samples: np.ndarray, arrived: float) -> None:
        self.feed(samples, arrived)
        self.inbox.put(_END)

    def stop(self) -> None:
        """Free the session's place now and stop its worker at its next motion window or render batch."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.service._release(self, worker_done=False)
        self.inbox.put(_STOP)
        for _ in range(self.service.settings.max_unsent_frames + 1):
            self.credits.release()

    @property
    def backlog_s(self) -> float:
        return (self.samples_fed - self.samples_done) / SAMPLE_RATE

    # worker thread
    def _emit(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, item)
        except RuntimeError:  # the loop is gone: the server is shutting down
            self.stopped.set()

    def _check(self) -> None:
        if self.stopped.is_set():
            raise _Stopped()

    def _send_frame(self, frame: np.ndarray, device) -> None:
        while not self.credits.acquire(timeout=0.1):
            self._check()
        self._check()
        self._emit(self.deliver(self.frames_made, frame, device))
        self.frames_made += 1

    def _take(self) -> tuple[np.ndarray, float | None, bool]:
        """Everything queued: the samples joined (a session behind realtime catches up in bigger pushes), when
        the last of them arrived, and whether the speech has ended."""
        items = [self.inbox.get()]
        while True:
            try:
                items.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        if any(item is _STOP for item in items):
            raise _Stopped()
        chunks = [item[0] for item in items if item is not _END]
        arrived = max((item[1] for item in items if item is not _END), default=None)
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return samples, arrived, any(item is _END for item in items)

    def _frames(self, session, samples: np.ndarray, ended: bool) -> Iterator[np.ndarray]:
        yield from session.push_frames(samples)
        if ended and session.stream.features.num_samples:
            yield from session.finish_frames()

    def _run(self) -> None:
        import torch

        from ..motion.sampler import SamplerOptions
        from ..online import OnlineSession

        settings = self.service.settings
        try:
            with torch.inference_mode(), self.service.pipelines.held() as pipeline:
                self._check()
                portrait = self.service.portraits.get(self.start.portrait, pipeline)
                self._check()
                sampler = replace(settings.sampler or SamplerOptions(), seed=self.start.seed)
                emotion = self.start.emotion if self.start.emotion is not None else settings.default_emotion
                scheduler = self.service.scheduler(pipeline.networks.device)
                session = OnlineSession(pipeline, portrait, emotion, sampler, settings.render, check=self._check,
                                        renderer=partial(scheduler.render_frames, self),
                                        window_runner=partial(scheduler.denoise_window, self, pipeline.networks.lmdm))
                height, width = portrait.images[0].shape[:2]
                if session.render_options.paste_back is False:
                    height = width = 512
                self._emit(("ready", {"type": "ready", "fps": FPS, "width": int(width), "height": int(height),
                                      "portrait": self.service.portraits.path(self.start.portrait).name,
                                      "max_message_bytes": settings.max_message_bytes}))
                while True:
                    samples, arrived, ended = self._take()
                    taken = time.perf_counter()
                    sampling_before, frames_before = session.stats.sampling_s, self.frames_made
                    for frame in self._frames(session, samples, ended):
                        if self.frames_made == 0:
                            self.timeline.split = {"audio_ready": arrived, "taken": taken,
                                                   "sampling": session.stats.sampling_s - sampling_before}
                        self._send_frame(frame, pipeline.networks.device)
                    scheduler.cost.add_sampling(session.stats.sampling_s - sampling_before,
                                                self.frames_made - frames_before)
                    self.samples_done += len(samples)
                    if ended:
                        stats = session.stats
                        self._emit(("done", {"frames": self.frames_made, "sampling_s": stats.sampling_s,
                                             "rendering_s": stats.rendering_s}))
                        return
        except _Stopped:
            pass
        except LiveError as exc:
            self._emit(("error", str(exc)))
        except Exception as exc:  # the message reaches the client; the traceback goes to the server's log
            log.exception("live session failed")
            self._emit(("error", f"{exc}" if _is_user_error(exc) else
                        f"the server failed while making frames ({type(exc).__name__}: {exc}); see the server's log"))
        finally:
            self.service._release(self, worker_done=True)
            self.service.forget(self)


def _is_user_error(exc: Exception) -> bool:
    """Errors whose message already says what is wrong and what to do (missing files, no face, bad emotion)."""
    from ..audio import AudioInputError
    from ..config_pickle import ConfigFileError
    from ..models import CheckpointError
    from ..motion import ConditionError
    from ..portrait import FaceModelError, NoFaceError, PortraitInputError

    return isinstance(exc, (AudioInputError, ConfigFileError, CheckpointError, ConditionError, FaceModelError,
                            NoFaceError, PortraitInputError, FileNotFoundError))
