"""Per-frame LMDM conditions: audio features, emotion, eye state and the source's canonical keypoints.

Order along the feature axis (the release's 1103 = 1024 + 8 + 2 + 6 + 63): audio, emotion, eye_open, eye_ball, sc.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "contempt")
LABEL_LOGIT = 8.0
CONDITION_PARTS = (("audio", 1024), ("emotion", 8), ("eye_open", 2), ("eye_ball", 6), ("canonical_kp", 63))


class ConditionError(ValueError):
    """Conditions that do not fit the model or cannot be built."""


def _is_weight_vector(emotion) -> bool:
    """8 numbers of which at least one is a float (a list of integer labels is a mix, not weights)."""
    if isinstance(emotion, np.ndarray):
        return emotion.shape == (8,) and np.issubdtype(emotion.dtype, np.floating)
    return (
        isinstance(emotion, Sequence)
        and len(emotion) == 8
        and all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in emotion)
        and any(isinstance(v, (float, np.floating)) for v in emotion)
    )


def emotion_vector(emotion) -> np.ndarray:
    """An emotion as the 8-way distribution the model reads.

    emotion: a label name or index (0 angry … 7 contempt), a list of labels (mixed equally), or 8 weights used as
    given. Labels become softmax of 8 at each chosen class, as the reference encodes them (one label: ≈0.9977).
    """
    if isinstance(emotion, (str, int, np.integer)):
        labels = [emotion]
    elif _is_weight_vector(emotion):
        weights = np.asarray(emotion, dtype=np.float32)
        if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
            raise ConditionError(f"emotion weights must be finite, non-negative and not all zero: {list(emotion)}")
        return weights / weights.sum()
    elif isinstance(emotion, Sequence) and 0 < len(emotion) < 8:
        labels = list(emotion)
    else:
        raise ConditionError(f"unsupported emotion {emotion!r}; use a name ({', '.join(EMOTIONS)}), an index 0-7, "
                             f"a list of them, or 8 weights")
    logits = np.zeros(8, dtype=np.float64)
    for label in labels:
        index = EMOTIONS.index(label.lower()) if isinstance(label, str) and label.lower() in EMOTIONS else label
        if not isinstance(index, (int, np.integer)) or not 0 <= index < 8:
            raise ConditionError(f"unknown emotion {label!r}; use one of {', '.join(EMOTIONS)} or an index 0-7")
        logits[index] = LABEL_LOGIT
    exp = np.exp(logits - logits.max())
    return (exp / exp.sum()).astype(np.float32)


def emotion_timeline(timeline, num_frames: int, fps: float = 25.0) -> np.ndarray:
    """Per-frame emotion ``[num_frames, 8]``.

    timeline: one emotion (see ``emotion_vector``); a list of ``(start_seconds, emotion)`` segments (each holds
    until the next start; before the first start the first segment's emotion applies); or, as the release cfg's
    ``emo`` gives it, a sequence repeated frame by frame: an ``[m, 8]`` array used as it is, or a list of ``m``
    label lists (frame ``i`` takes row ``i mod m``).
    """
    if isinstance(timeline, np.ndarray) and timeline.ndim == 2:
        if timeline.shape[1] != 8 or len(timeline) == 0:
            raise ConditionError(f"an emotion sequence must have shape [m, 8], got {timeline.shape}")
        return np.asarray(timeline, np.float32)[np.arange(num_frames) % len(timeline)]
    if isinstance(timeline, list) and timeline and all(isinstance(s, list) for s in timeline):
        rows = np.stack([emotion_vector(labels) for labels in timeline])
        return rows[np.arange(num_frames) % len(rows)]
    if not (isinstance(timeline, list) and timeline and all(isinstance(s, tuple) and len(s) == 2 for s in timeline)):
        return np.repeat(emotion_vector(timeline)[None], num_frames, axis=0)
    segments = sorted(timeline, key=lambda s: s[0])
    out = np.empty((num_frames, 8), dtype=np.float32)
    starts = [int(round(float(start) * fps)) for start, _ in segments]
    for i, (_, emotion) in enumerate(segments):
        begin = 0 if i == 0 else max(0, starts[i])
        end = num_frames if i + 1 == len(segments) else max(0, starts[i + 1])
        out[begin:end] = emotion_vector(emotion)
    return out


def describe_emotion(emotion) -> str:
    """A short text for metadata and messages."""
    if isinstance(emotion, np.ndarray):
        return f"sequence of {len(emotion)} emotion rows"
    if isinstance(emotion, list) and emotion and all(isinstance(s, list) for s in emotion):
        return f"sequence of {len(emotion)} label sets"
    return emotion if isinstance(emotion, (str, int)) else repr(emotion)


def build_conditions(
    audio: torch.Tensor,
    emotion: np.ndarray,
    eye_open: np.ndarray,
    eye_ball: np.ndarray,
    canonical_kp: np.ndarray,
    cond_dim: int,
    parts=None,
) -> torch.Tensor:
    """Concatenate per-frame conditions ``[N, cond_dim]``.

    audio ``[N, 1024]``; emotion ``[N, 8]``; eye_open ``[N, 2]``; eye_ball ``[N, 6]``; canonical_kp ``[63]``.
    parts: which of emotion, eye_open, eye_ball, canonical_kp the model takes (a ``ConditionParts``, the cfg's
    ``use_*`` flags; None: all, the release's 1103 = 1024 + 8 + 2 + 6 + 63). The width must be the model's ``cond_dim``.
    """
    n = audio.shape[0]
    values = {
        "audio": audio.float().cpu().numpy(),
        "emotion": emotion,
        "eye_open": eye_open,
        "eye_ball": eye_ball,
        "canonical_kp": np.repeat(np.asarray(canonical_kp, np.float32).reshape(1, 63), n, axis=0),
    }
    used = [(name, width) for name, width in CONDITION_PARTS if name == "audio" or parts is None or getattr(parts, name)]
    for name, width in used:
        if values[name].shape != (n, width):
            raise ConditionError(f"condition {name} has shape {values[name].shape}, expected ({n}, {width})")
    total = sum(width for _, width in used)
    if cond_dim != total:
        listed = ", ".join(f"{name} {width}" for name, width in used)
        raise ConditionError(
            f"the motion model takes {cond_dim}-wide conditions, but the configuration's parts ({listed}) make "
            f"{total}; use lmdm_v0.4_hubert.pth with the release's ditto_cfg from the same download."
        )
    return torch.from_numpy(np.concatenate([values[name] for name, _ in used], axis=1).astype(np.float32))


def parse_emotion(text: str):
    """``happy`` | ``3`` | ``happy+surprise`` (a mix) | ``0:neutral, 2.5:happy`` (a timeline in seconds)."""

    def one(item: str):
        labels = [int(p) if p.strip().isdigit() else p.strip() for p in item.split("+")]
        return labels[0] if len(labels) == 1 else labels

    text = text.strip()
    if ":" in text:
        try:
            timeline = [(float(start), one(label)) for start, label in (seg.split(":", 1) for seg in text.split(","))]
        except ValueError as exc:
            raise ConditionError(f"cannot read the emotion timeline {text!r}; write it as 0:neutral, 2.5:happy") from exc
        for _, emotion in timeline:
            emotion_vector(emotion)
        return timeline
    emotion = one(text)
    emotion_vector(emotion)
    return emotion
