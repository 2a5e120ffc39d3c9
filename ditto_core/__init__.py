"""ComfyUI-Ditto core: audio-driven talking-head models and pipeline, importable without ComfyUI.

    from ditto_core import DittoPipeline, speech_to_video

    pipeline = DittoPipeline.load("models/ditto")           # the release, set up as its ditto_cfg says
    portrait = pipeline.register("portrait.jpg")            # a path, PIL image, numpy array or torch tensor
    clip = load_audio("speech.wav")                         # a path, (waveform, rate) or ComfyUI's AUDIO
    motion = speech_to_video("talking.mp4", pipeline, portrait, clip)
    motion.save("talking.safetensors")

The names below are the public API; they are imported on first use, so ``import ditto_core`` stays light.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "DittoPipeline": ".pipeline",
    "Portrait": ".portrait",
    "RegistrationOptions": ".portrait",
    "AudioClip": ".audio",
    "AudioFeatures": ".audio",
    "load_audio": ".audio",
    "load_image": ".portrait.images",
    "Motion": ".motion",
    "SamplerOptions": ".motion",
    "EMOTIONS": ".motion",
    "parse_emotion": ".motion.conditions",
    "controls": ".motion.controls",
    "RenderOptions": ".render",
    "render_faces": ".render",
    "FacePlacement": ".portrait.paste",
    "paste_faces": ".portrait.paste",
    "clip_for_source": ".stream",
    "read_video": ".video",
    "ReleaseConfig": ".release_config",
    "speech_to_frames": ".stream",
    "speech_to_video": ".stream",
    "write_mp4": ".video",
    "VideoEncoding": ".video",
    "OnlineSession": ".online",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ditto_core' has no attribute {name!r}")
    module = importlib.import_module(_PUBLIC[name], __name__)
    return module if name == "controls" else getattr(module, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
