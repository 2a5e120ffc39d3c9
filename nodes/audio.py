"""Encode Audio: ComfyUI AUDIO → DITTO_AUDIO_FEATURES (25-fps HuBERT features)."""

from __future__ import annotations

import numpy as np
import torch
from comfy_api.latest import io

from ..ditto_core.audio import AudioFeatures, StreamingFeatureExtractor, load_audio
from ..ditto_core.audio.clip import SAMPLE_RATE
from .common import CATEGORY, Progress, check_interrupt
from .types import DittoAudioFeatures, DittoModels

CHUNK_SECONDS = 2


class DittoEncodeAudio(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DittoEncodeAudio",
            display_name="Encode Audio (Ditto)",
            category=CATEGORY,
            description="Encodes speech (any rate and channel count) into the 25-fps HuBERT features the motion "
                        "model listens to. One video frame per 40 ms of audio.",
            search_aliases=["speech features", "hubert", "lip sync", "audio driven"],
            inputs=[DittoModels.Input("models"), io.Audio.Input("audio", tooltip="Speech, e.g. from Load Audio.")],
            outputs=[DittoAudioFeatures.Output("audio_features", tooltip="Per-frame audio features."),
                     io.Audio.Output("audio", tooltip="The input audio, passed through.")],
        )

    @classmethod
    def execute(cls, models, audio) -> io.NodeOutput:
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
        return io.NodeOutput(features, audio)
