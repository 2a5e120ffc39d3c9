"""Encode Audio: ComfyUI AUDIO → DITTO_AUDIO_FEATURES (25-fps HuBERT features)."""

from __future__ import annotations

import numpy as np
import torch

from ..ditto_core.audio import AudioFeatures, StreamingFeatureExtractor, load_audio
from ..ditto_core.audio.clip import SAMPLE_RATE
from .common import CATEGORY, Progress, check_interrupt

CHUNK_SECONDS = 2


class DittoEncodeAudio:
    DESCRIPTION = (
        "Encodes speech (any rate and channel count) into the 25-fps HuBERT features the motion model listens to. "
        "One video frame per 40 ms of audio."
    )
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = ("DITTO_AUDIO_FEATURES", "AUDIO")
    RETURN_NAMES = ("audio_features", "audio")
    OUTPUT_TOOLTIPS = ("Per-frame audio features.", "The input audio, passed through.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"models": ("DITTO_MODELS",), "audio": ("AUDIO", {"tooltip": "Speech, e.g. from Load Audio."})}}

    def encode(self, models, audio):
        clip = load_audio(audio)
        extractor = StreamingFeatureExtractor(models.encoder)  # chunked: progress and interrupts as it goes
        chunk = CHUNK_SECONDS * SAMPLE_RATE
        progress = Progress(-(-len(clip.samples) // chunk) + 1)
        parts = []
        for start in range(0, len(clip.samples), chunk):
            check_interrupt()
            parts.append(extractor.push(clip.samples[start : start + chunk]))
            progress.update()
        parts.append(extractor.finish())
        progress.update()
        features = AudioFeatures(frames=torch.from_numpy(np.concatenate(parts)), duration_s=clip.duration_s)
        return (features, audio)
