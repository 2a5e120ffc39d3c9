"""Motion sampling with the LMDM: DDIM over 80-frame windows, chained with overlap, blended and smoothed.

One code path serves offline and online use: ``MotionChain`` takes condition rows as they arrive and returns
motion frames once no later window can change them, so feeding a whole clip at once (offline) and feeding it in
pieces (online) give identical frames for the same seed. Online use adds a pre-roll of silent frames in front, as
the reference's online mode does, so the first window needs only ``80 − overlap`` new frames.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, replace

import torch

from ..diffusion import ddim_time_pairs
from .motion import MOTION_DIM

POSE_AND_TRANSLATION = slice(0, 202)  # the dims smoothing touches: scale, pose logits, t (expression never)


@dataclass(frozen=True)
class ChainConfig:
    """How LMDM windows are sampled and chained. The release cfg sets every field (``ReleaseConfig.chain``); the
    defaults here are the reference code's own."""

    steps: int = 50  # DDIM steps per window (sampling_timesteps)
    overlap: int = 10  # frames shared by consecutive 80-frame windows (overlap_v2)
    smoothing: int = 3  # centred moving average over frames on scale, pose and t, ≤ 1: off (smo_k_d)
    short_blend: bool = False  # blend min(overlap, 80 − overlap) frames instead of overlap (online_mode)
    reset_every: int = 0  # every n-th window is conditioned on the source's frame again, 0: never (fix_kp_cond)
    reset_keep: tuple[int, int] | None = None  # motion dims [start, end) kept from the chain on reset (fix_kp_cond_dim)
    clip_min: torch.Tensor | None = None  # ``[265]`` bounds every emitted frame is clipped to (v_min_max_for_clip)
    clip_max: torch.Tensor | None = None

    def validate(self, seq_len: int) -> None:
        check_steps(self.steps)
        if not 0 <= self.overlap < seq_len:
            raise ValueError(f"overlap must be between 0 and {seq_len - 1} frames, got {self.overlap}")
        if self.smoothing < 0:
            raise ValueError(f"smoothing must be 0 or more frames, got {self.smoothing}")
        if self.reset_every < 0:
            raise ValueError(f"the window reset interval must be 0 or more, got {self.reset_every}")

    def settings(self) -> dict:
        """The chaining settings a sampled Motion records."""
        return {"steps": self.steps, "overlap": self.overlap, "smoothing": self.smoothing,
                "short_blend": self.short_blend, "reset_every": self.reset_every,
                "reset_keep": list(self.reset_keep) if self.reset_keep else None,
                "clipped": self.clip_min is not None}


MAX_STEPS = 1000  # the LMDM's diffusion timesteps: DDIM takes at most one step per timestep
MAX_SEED = 2**63 - 1  # what torch.Generator.manual_seed and ComfyUI's seed widget take


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"sampling steps must be a whole number from 1 to {MAX_STEPS}, got {steps!r}")
    return steps


@dataclass(frozen=True)
class SamplerOptions:
    """What a user chooses for one sampling; ``None`` keeps the configuration's value (the release's, as
    released)."""

    steps: int | None = None
    overlap: int | None = None
    smoothing: int | None = None
    seed: int = 0

    def __post_init__(self):
        if self.steps is not None:
            check_steps(self.steps)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"the seed must be a whole number from 0 to 2**63 - 1, got {self.seed!r}")

    def apply(self, chain: ChainConfig) -> ChainConfig:
        chosen = {name: value for name in ("steps", "overlap", "smoothing")
                  if (value := getattr(self, name)) is not None}
        return replace(chain, **chosen)


@dataclass(frozen=True)
class DdimStep:
    """One DDIM step: its timestep ``t``, the same as ``time_cond`` ``[1]`` int64 on the LMDM's device, and the
    update's (√ᾱ', c, σ), None for the last step (which returns x₀)."""

    t: int
    time_cond: torch.Tensor
    update: tuple[float, float, float] | None


def ddim_steps(lmdm: torch.nn.Module, steps: int) -> list[DdimStep]:
    """The reference's DDIM (η = 1) schedule of ``steps`` steps for ``lmdm``."""
    acp = lmdm.alphas_cumprod.cpu()
    device = lmdm.alphas_cumprod.device
    out = []
    for t, t_next in ddim_time_pairs(steps):
        time_cond = torch.full((1,), t, dtype=torch.long, device=device)
        if t_next < 0:
            out.append(DdimStep(t, time_cond, None))
            continue
        alpha, alpha_next = acp[t], acp[t_next]
        sigma = ((1 - alpha / alpha_next) * (1 - alpha_next) / (1 - alpha)).sqrt()
        # 1 − ᾱ' − σ² is ≈0 at the first step; float32 can make it slightly negative (NaN in the reference for
        # some step counts, e.g. 5), so it is clamped at 0.
        c = (1 - alpha_next - sigma**2).clamp(min=0).sqrt()
        out.append(DdimStep(t, time_cond, (alpha_next.sqrt().item(), c.item(), sigma.item())))
    return out


@dataclass
class Window:
    """One window's DDIM inputs on the LMDM's device: its start noise ``x [1, T, 265]``, condition frame
    ``[1, 265]``, condition rows ``[1, T, C]``, its sampler's schedule and per-step noises ``[1, T, 265]`` (one per
    step with an update; the same for every window of a seed)."""

    x: torch.Tensor
    cond_frame: torch.Tensor
    cond: torch.Tensor
    schedule: list[DdimStep]
    noises: list[torch.Tensor]

    @property
    def times(self) -> tuple[int, ...]:
        """The schedule's time steps: windows with the same ones can be denoised in one batch."""
        return tuple(step.t for step in self.schedule)


def denoise_steps(lmdm: torch.nn.Module, windows: list[Window]) -> torch.Tensor:
    """DDIM (η = 1) for several windows with the same time steps in one batch, each with its own noise: the clean
    windows ``[n, T, 265]`` on the LMDM's device. No host transfer, so a CUDA graph can capture it."""
    schedule = windows[0].schedule
    if any(w.times != windows[0].times for w in windows):
        raise ValueError("windows denoised together must have the same time steps")

    def joined(tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(tensors) if len(tensors) > 1 else tensors[0]

    x, cond_frame, cond = (joined([getattr(w, name) for w in windows]) for name in ("x", "cond_frame", "cond"))
    for k, step in enumerate(schedule):
        pred_noise, x_start = lmdm(x, cond_frame, cond, step.time_cond.expand(len(windows)))
        if step.update is None:
            return x_start
        alpha_next_sqrt, c, sigma = step.update
        x = x_start * alpha_next_sqrt + c * pred_noise + sigma * joined([w.noises[k] for w in windows])
    return x


@torch.inference_mode()
def denoise_windows(lmdm: torch.nn.Module, windows: list[Window]) -> list[torch.Tensor]:
    """:func:`denoise_steps` for several sessions' windows at once: each clean window ``[T, 265]`` (CPU float32)."""
    return list(denoise_steps(lmdm, windows).float().cpu())


class WindowGraph:
    """A whole LMDM window (every step of a schedule, both guidance branches) captured as one CUDA graph: the same
    kernels on the same inputs as ``denoise_steps`` of that one window, without Python launching each of the thousands of small
    kernels a batch-1 transformer makes (which is what a window's time is on a GPU: bench/gpu.py measured 657 ms
    eager against 137 ms replayed for 25 steps on an H200, the same numbers to the bit).

    Captured once, where nothing else uses the GPU (``capture_window_graphs``, at pipeline load), and shared by
    every sampler of that LMDM and step count, whatever its seed: the inputs and the per-step noise are copied into
    the graph's own buffers, under a lock, before each replay."""

    def __init__(self, lmdm: torch.nn.Module, steps: int):
        config = lmdm.config
        device = lmdm.alphas_cumprod.device
        self.schedule = ddim_steps(lmdm, steps)
        shape = (1, config.seq_len, config.motion_dim)
        self.inputs = (torch.zeros(shape, device=device), torch.zeros(1, config.motion_dim, device=device),
                       torch.zeros(1, config.seq_len, config.cond_dim, device=device))
        self.noises = [torch.zeros(shape, device=device) for step in self.schedule if step.update is not None]
        self.lock = threading.Lock()
        with torch.inference_mode():
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            window = Window(*self.inputs, self.schedule, self.noises)
            with torch.cuda.stream(side):  # lazy initialisation (cuBLAS, attention kernels) outside the capture
                denoise_steps(lmdm, [window])
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.output = denoise_steps(lmdm, [window])

    def fits(self, window: Window) -> bool:
        return window.times == self.times and window.cond.shape == self.inputs[2].shape

    @property
    def times(self) -> tuple[int, ...]:
        return tuple(step.t for step in self.schedule)

    def __call__(self, window: Window) -> torch.Tensor:
        """The clean window ``[1, T, 265]`` on the device (a copy: the graph's output buffer is reused)."""
        with self.lock:
            for buffer, value in zip((*self.inputs, *self.noises),
                                     (window.x, window.cond_frame, window.cond, *window.noises)):
                buffer.copy_(value)
            self.graph.replay()
            return self.output.clone()


_WINDOW_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # LMDM → {(device, steps): WindowGraph}


def capture_window_graphs(lmdm: torch.nn.Module, step_counts) -> None:
    """Capture a WindowGraph for each step count, for an LMDM on a CUDA device (nothing elsewhere). Call it while
    no other thread uses the GPU: a capture cannot share the device with other work."""
    device = lmdm.alphas_cumprod.device
    if device.type != "cuda":
        return
    graphs = _WINDOW_GRAPHS.setdefault(lmdm, {})
    for steps in step_counts:
        if (device, steps) not in graphs:
            graphs[(device, steps)] = WindowGraph(lmdm, steps)


def window_graph(lmdm: torch.nn.Module, steps: int) -> WindowGraph | None:
    """The captured WindowGraph of ``lmdm`` at its current device and ``steps``, if any."""
    return _WINDOW_GRAPHS.get(lmdm, {}).get((lmdm.alphas_cumprod.device, steps))


class WindowSampler:
    """DDIM (η = 1) for one window with the reference's schedule: the per-step noise is drawn once and reused for
    every window; each window starts from fresh noise. All noise comes from one CPU generator seeded with
    ``seed``, so a seed gives the same motion on any device. ``runner``: what denoises a :class:`Window` (by default
    this sampler alone: the graph ``capture_window_graphs`` captured for this LMDM and step count on CUDA, the same
    numbers, else eagerly; the live server's scheduler batches several sessions' windows)."""

    def __init__(self, lmdm: torch.nn.Module, steps: int, seed: int):
        self.lmdm = lmdm
        self.device = lmdm.alphas_cumprod.device
        config = lmdm.config
        self.shape = (1, config.seq_len, config.motion_dim)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps = check_steps(steps)  # before the schedule and its noise are made
        self.schedule = ddim_steps(lmdm, steps)
        self.noises = [torch.randn(self.shape, generator=self.generator).to(self.device)
                       for step in self.schedule if step.update is not None]
        self.runner = self._alone

    @torch.inference_mode()
    def __call__(self, cond_frame: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """cond_frame ``[265]``, cond ``[T, C]`` → clean motion window ``[T, 265]`` (CPU float32)."""
        x = torch.randn(self.shape, generator=self.generator).to(self.device)
        cond_frame = cond_frame.to(self.device, torch.float32)[None]
        cond = cond.to(self.device, torch.float32)[None]
        return self.runner(Window(x, cond_frame, cond, self.schedule, self.noises))

    def _alone(self, window: Window) -> torch.Tensor:
        graph = window_graph(self.lmdm, self.steps)
        clean = graph(window) if graph is not None and graph.fits(window) else denoise_steps(self.lmdm, [window])
        return clean[0].float().cpu()


def smooth_rows(seq: torch.Tensor, start: int, stop: int, window: int) -> torch.Tensor:
    """Rows ``start:stop`` of ``seq`` ``[L, 265]`` replaced, on scale/pose/t only, by the centred mean of the
    *input* rows (not recursive) over ``window`` frames, truncated at the ends of ``seq``."""
    if window <= 1:
        return seq
    out = seq.clone()
    half = window // 2
    for i in range(max(start, 0), min(stop, len(seq))):
        out[i, POSE_AND_TRANSLATION] = seq[max(0, i - half) : i + half + 1, POSE_AND_TRANSLATION].mean(0)
    return out


class MotionChain:
    """Chains LMDM windows over a condition sequence that may arrive in pieces.

    first_frame ``[265]``: the source's motion vector, the first window's condition frame.

    Offline, consecutive windows are blended over the whole overlap. Online (the reference's online mode), they
    are blended over min(overlap, 80 − overlap) frames, and the first ``overlap`` condition rows are a silent
    pre-roll (the caller pushes them) whose motion is generated but not returned; with the large overlaps online
    use calls for (70-75), frames then become final 80 − overlap at a time.
    """

    def __init__(self, sampler: WindowSampler, first_frame: torch.Tensor, config: ChainConfig = ChainConfig(),
                 online: bool = False, on_window=None):
        seq_len = sampler.shape[1]
        config.validate(seq_len)
        self.sampler = sampler
        self.config = config
        self.seq_len = seq_len
        self.overlap = config.overlap
        self.valid = seq_len - config.overlap
        self.fuse = min(self.overlap, self.valid) if online or config.short_blend else self.overlap
        self.fuse_weights = torch.arange(self.fuse, dtype=torch.float32)[:, None] / max(self.fuse, 1)
        self.smoothing = config.smoothing
        self.half = config.smoothing // 2 if config.smoothing > 1 else 0
        self.online = online
        self.preroll = self.overlap if online else 0
        self.on_window = on_window  # called after every window (progress, interrupt checks)
        self.first_frame = first_frame.float().cpu()
        self.cond_frame = self.first_frame.clone()
        self.cond = None  # condition rows from global index cond_start on
        self.padding = None  # condition rows after the last one, for padded windows (set by finish)
        self.cond_start = 0
        self.received = 0
        self.windows = 0
        self.result = torch.zeros(0, MOTION_DIM)  # chained motion from global index result_start on
        self.result_start = 0
        self.emitted = 0  # global index of the next frame to emit
        self.anchor = None  # final value of global frame 0
        self.finished = False

    @property
    def length(self) -> int:
        return self.result_start + len(self.result)

    def _append_window(self, window_cond: torch.Tensor) -> None:
        pred = self.sampler(self.cond_frame, window_cond)
        if self.windows == 0:
            self.result = smooth_rows(pred, 0, self.seq_len, self.smoothing)
        else:
            fused = self.result.clone()
            if self.fuse:
                tail = fused[-self.fuse :]
                head = pred[self.seq_len - self.valid - self.fuse : self.seq_len - self.valid]
                fused[-self.fuse :] = tail * (1 - self.fuse_weights) + head * self.fuse_weights
            fused = torch.cat([fused, pred[self.seq_len - self.valid :]])
            local_end = len(fused)
            self.result = smooth_rows(
                fused, local_end - self.valid - self.fuse, local_end - self.valid + 1, self.smoothing
            )
        self.windows += 1
        if self.on_window is not None:
            self.on_window()
        self.cond_frame = self._next_cond_frame(self.result[self.length - self.overlap - 1 - self.result_start])

    def _next_cond_frame(self, last: torch.Tensor) -> torch.Tensor:
        """The next window's condition frame: the chain's frame before it, or on every ``reset_every``-th window
        the source's frame with dims ``reset_keep`` taken from the chain."""
        reset = self.config.reset_every
        if reset <= 0 or self.windows % reset != 0:
            return last.clone()
        frame = self.first_frame.clone()
        if self.config.reset_keep is not None:
            start, end = self.config.reset_keep
            frame[start:end] = last[start:end]
        return frame

    def _window_cond(self, start: int, total: int | None) -> torch.Tensor | None:
        """Rows [start, start + T) if they have all arrived (or, once the total is known, padded)."""
        local = start - self.cond_start
        available = self.received - start
        if available >= self.seq_len:
            return self.cond[local : local + self.seq_len]
        if total is None:
            return None
        rows = self.cond[local:]
        padding = self.padding if self.padding is not None else rows[-1:]
        missing = self.seq_len - len(rows)
        padding = torch.cat([padding[:missing], padding[-1:].expand(max(missing - len(padding), 0), -1)])
        return torch.cat([rows, padding])

    def _final_frames(self, upto: int, values: torch.Tensor) -> torch.Tensor:
        """Emit frames [emitted, upto) from ``values`` (indexed from result_start)."""
        out = values[self.emitted - self.result_start : upto - self.result_start]
        if self.config.clip_min is not None:
            out = torch.clamp(out, min=self.config.clip_min, max=self.config.clip_max)
        if self.emitted == 0 and len(out):
            self.anchor = out[0].clone()
        first_kept = max(self.preroll - self.emitted, 0)
        self.emitted = upto
        return out[first_kept:]

    def _drop_consumed(self) -> None:
        next_start = self.windows * self.valid
        drop_cond = next_start - self.cond_start
        if drop_cond > 0:
            self.cond = self.cond[drop_cond:]
            self.cond_start = next_start
        # keep what smoothing of unemitted frames and the next window's condition frame (row L + V − O − 1) read
        keep_from = max(min(self.emitted - self.half - 1, self.length + self.valid - self.overlap - 1), self.result_start)
        self.result = self.result[keep_from - self.result_start :]
        self.result_start = keep_from

    def push(self, cond_rows: torch.Tensor) -> torch.Tensor:
        """Add condition rows ``[n, C]``; returns the newly final motion frames ``[m, 265]``."""
        if self.finished:
            raise RuntimeError("the motion chain is finished")
        cond_rows = cond_rows.float().cpu()
        self.cond = cond_rows if self.cond is None else torch.cat([self.cond, cond_rows])
        self.received += len(cond_rows)
        while (window := self._window_cond(self.windows * self.valid, None)) is not None:
            self._append_window(window)
        if self.windows == 0:
            return torch.zeros(0, MOTION_DIM)
        # later windows rewrite the last `fuse` rows; offline, the final smoothing pass also reads `half` beyond
        final_upto = self.length - self.fuse - (0 if self.online else self.half)
        frames = torch.zeros(0, MOTION_DIM)
        if final_upto > self.emitted:
            frames = self._final_frames(final_upto, self._finally_smoothed(final_upto))
        self._drop_consumed()
        return frames

    def finish(self, padding: torch.Tensor | None = None) -> torch.Tensor:
        """End of conditions: sample the remaining windows, padded with the last condition row repeated (the
        offline reference) or with ``padding`` ``[k, C]``, the rows that would follow (the online reference pads
        the audio and conditions it frame by frame); returns the last frames."""
        self.padding = None if padding is None else padding.float().cpu()
        if self.finished:
            raise RuntimeError("finish() was already called")
        if self.received == 0:
            raise ValueError("no conditions were given")
        self.finished = True
        total = self.received
        while self.windows * self.valid < total:
            start = self.windows * self.valid
            self._append_window(self._window_cond(start, total))
            if self.online and start + self.seq_len > total:
                break  # online, the reference stops at the first window that reaches past the end
        self.result = self.result[: total - self.result_start]
        return self._final_frames(total, self._finally_smoothed(total))

    def _finally_smoothed(self, upto: int) -> torch.Tensor:
        """The chain from result_start on, with rows [emitted, upto) given the offline chain's final smoothing
        pass (online, the reference emits rows as they are)."""
        if self.online:
            return self.result
        return smooth_rows(self.result, self.emitted - self.result_start, upto - self.result_start, self.smoothing)


def first_frame_vector(keypoints: dict[str, torch.Tensor], index: int = 0) -> torch.Tensor:
    """The source's motion vector ``[265]`` (frame ``index`` of a portrait's keypoints)."""
    from .motion import keypoint_fields_to_vector

    return keypoint_fields_to_vector({k: v[index : index + 1] for k, v in keypoints.items() if k != "kp"})[0]


def num_windows(num_frames: int, overlap: int, seq_len: int = 80) -> int:
    return -(-num_frames // (seq_len - overlap))


def sample_offline(lmdm, cond: torch.Tensor, first_frame: torch.Tensor, config: ChainConfig, seed: int = 0,
                   on_window=None) -> tuple[torch.Tensor, torch.Tensor]:
    """All motion frames ``[N, 265]`` for conditions ``[N, C]`` and the anchor frame ``[265]``."""
    chain = MotionChain(WindowSampler(lmdm, config.steps, seed), first_frame, config, on_window=on_window)
    frames = [chain.push(cond), chain.finish()]
    return torch.cat(frames), chain.anchor
