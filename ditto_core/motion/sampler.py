"""Motion sampling with the LMDM: DDIM over 80-frame windows, chained with overlap, blended and smoothed.

One code path serves offline and online use: ``MotionChain`` takes condition rows as they arrive and returns
motion frames once no later window can change them, so feeding a whole clip at once (offline) and feeding it in
pieces (online) give identical frames for the same seed. Online use adds a pre-roll of silent frames in front, as
the reference's online mode does, so the first window needs only ``80 − overlap`` new frames.
"""

from __future__ import annotations

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
        if self.steps < 1 or self.steps > 1000:
            raise ValueError(f"sampling steps must be between 1 and 1000, got {self.steps}")
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


@dataclass(frozen=True)
class SamplerOptions:
    """What a user chooses for one sampling; ``None`` keeps the configuration's value (the release's, as
    released)."""

    steps: int | None = None
    overlap: int | None = None
    smoothing: int | None = None
    seed: int = 0

    def apply(self, chain: ChainConfig) -> ChainConfig:
        chosen = {name: value for name in ("steps", "overlap", "smoothing")
                  if (value := getattr(self, name)) is not None}
        return replace(chain, **chosen)


class WindowSampler:
    """DDIM (η = 1) for one window with the reference's schedule: the per-step noise is drawn once and reused for
    every window; each window starts from fresh noise. All noise comes from one CPU generator seeded with
    ``seed``, so a seed gives the same motion on any device.

    On CUDA, from the second window on, the whole window (every step, both guidance branches) replays as one CUDA
    graph captured then: the same kernels on the same inputs, without Python launching each of the thousands of
    small kernels a batch-1 transformer step makes (which is what a window's time is, there). ``cuda_graphs``
    False keeps every window eager.
    """

    def __init__(self, lmdm: torch.nn.Module, steps: int, seed: int, cuda_graphs: bool = True):
        self.lmdm = lmdm
        self.device = lmdm.alphas_cumprod.device
        config = lmdm.config
        self.shape = (1, config.seq_len, config.motion_dim)
        self.generator = torch.Generator().manual_seed(seed)
        acp = lmdm.alphas_cumprod.cpu()
        self.steps = []
        for t, t_next in ddim_time_pairs(steps):
            time_cond = torch.full((1,), t, dtype=torch.long, device=self.device)
            if t_next < 0:
                self.steps.append((time_cond, None))
                continue
            alpha, alpha_next = acp[t], acp[t_next]
            sigma = ((1 - alpha / alpha_next) * (1 - alpha_next) / (1 - alpha)).sqrt()
            # 1 − ᾱ' − σ² is ≈0 at the first step; float32 can make it slightly negative (NaN in the reference
            # for some step counts, e.g. 5), so it is clamped at 0.
            c = (1 - alpha_next - sigma**2).clamp(min=0).sqrt()
            noise = torch.randn(self.shape, generator=self.generator).to(self.device)
            self.steps.append((time_cond, (alpha_next.sqrt().item(), c.item(), sigma.item(), noise)))
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self.windows = 0
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], torch.Tensor]] = {}

    @torch.inference_mode()
    def __call__(self, cond_frame: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """cond_frame ``[265]``, cond ``[T, C]`` → clean motion window ``[T, 265]`` (CPU float32)."""
        x = torch.randn(self.shape, generator=self.generator).to(self.device)
        cond_frame = cond_frame.to(self.device, torch.float32)[None]
        cond = cond.to(self.device, torch.float32)[None]
        self.windows += 1
        if self.cuda_graphs and self.windows > 1:  # the first window is not held up by a capture
            return self._replayed(x, cond_frame, cond)[0].float().cpu()
        return self._denoised(x, cond_frame, cond)[0].float().cpu()

    def _denoised(self, x: torch.Tensor, cond_frame: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x ``[1, T, 265]`` noise → the clean window ``[1, T, 265]``, every step (on x's device)."""
        for time_cond, update in self.steps:
            pred_noise, x_start = self.lmdm(x, cond_frame, cond, time_cond)
            if update is None:
                return x_start
            alpha_next_sqrt, c, sigma, noise = update
            x = x_start * alpha_next_sqrt + c * pred_noise + sigma * noise
        return x

    def _replayed(self, x: torch.Tensor, cond_frame: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``_denoised`` through a CUDA graph per input shape, captured on its first use."""
        key = (x.shape, cond_frame.shape, cond.shape)
        if key not in self.graphs:
            inputs = (x.clone(), cond_frame.clone(), cond.clone())
            graph = torch.cuda.CUDAGraph()
            # other threads (live sessions, the renderer) go on using the GPU while this one captures
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                output = self._denoised(*inputs)
            self.graphs[key] = (graph, inputs, output)
        graph, inputs, output = self.graphs[key]
        for buffer, value in zip(inputs, (x, cond_frame, cond)):
            buffer.copy_(value)
        graph.replay()
        return output.clone()


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
