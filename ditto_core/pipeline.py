"""The whole chain in one object: register a portrait, encode speech, sample motion, render frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import AudioClip, AudioFeatures, extract_features, load_audio
from .audio.encoders import load_encoder
from .motion.conditions import build_conditions, emotion_timeline
from .motion.motion import Motion
from .motion.sampler import SamplerOptions, first_frame_vector, sample_offline
from .networks import DittoNetworks, load_networks
from .portrait import FaceModels, Portrait, RegistrationOptions, load_face_models, register_portrait
from .portrait.registration import mirror_index
from .render import RenderOptions, render_frames


def portrait_conditions(portrait: Portrait, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Eye-open ``[n, 2]`` and eye-ball ``[n, 6]`` for output frames ``start:stop`` (a video source loops
    ping-pong; negative indices, the online pre-roll, use frame 0)."""
    index = [mirror_index(i, portrait.num_frames) for i in range(start, stop)]
    return portrait.eye_open[index], portrait.eye_ball[index]


def motion_conditions(portrait: Portrait, audio: torch.Tensor, emotion, cond_dim: int, start: int = 0,
                      fps: float = 25.0) -> torch.Tensor:
    """The LMDM's conditions ``[n, cond_dim]`` for frames ``start:start+n`` given their audio rows ``[n, 1024]``
    (negative frame indices: the online pre-roll, conditioned like frame 0)."""
    stop = start + len(audio)
    eye_open, eye_ball = portrait_conditions(portrait, start, stop)
    emotion_rows = emotion_timeline(emotion, max(stop, 1), fps)[[max(i, 0) for i in range(start, stop)]]
    return build_conditions(audio, emotion_rows, eye_open, eye_ball, portrait.canonical_kp, cond_dim)


def sample_motion(lmdm, portrait: Portrait, features: AudioFeatures, emotion="neutral",
                  options: SamplerOptions = SamplerOptions(), on_window=None) -> Motion:
    """Offline motion for the whole audio: ``features.num_frames`` frames at 25 fps. ``on_window`` is called
    after each 80-frame window."""
    cond = motion_conditions(portrait, features.frames, emotion, lmdm.config.cond_dim, fps=features.fps)
    frames, anchor = sample_offline(lmdm, cond, first_frame_vector(portrait.keypoints), options, on_window)
    return Motion(frames=frames, fps=features.fps, anchor=anchor,
                  metadata=sampled_metadata(options, emotion, features.duration_s))


def sampled_metadata(options: SamplerOptions, emotion, audio_seconds: float) -> dict:
    """What a sampled Motion records of how it was made."""
    return {"source": "ditto-lmdm", "seed": options.seed, "steps": options.steps, "overlap": options.overlap,
            "emotion": emotion if isinstance(emotion, (str, int)) else repr(emotion), "audio_seconds": audio_seconds}


@dataclass
class DittoPipeline:
    networks: DittoNetworks
    face_models: FaceModels
    encoder: object

    @classmethod
    def load(cls, root: str | Path, device: str = "cpu", audio_backend: str = "onnx",
             hubert_dir: str | Path | None = None) -> "DittoPipeline":
        return cls(
            networks=load_networks(root, device),
            face_models=load_face_models(root, device),
            encoder=load_encoder(audio_backend, release_root=root, hubert_dir=hubert_dir, device=device),
        )

    def register(self, images, options: RegistrationOptions = RegistrationOptions()) -> Portrait:
        return register_portrait(images, self.networks.appearance_extractor, self.networks.motion_extractor,
                                 self.face_models, options)

    def encode_audio(self, audio) -> tuple[AudioClip, AudioFeatures]:
        clip = audio if isinstance(audio, AudioClip) else load_audio(audio)
        return clip, extract_features(clip, self.encoder)

    def sample(self, portrait: Portrait, features: AudioFeatures, emotion="neutral",
               options: SamplerOptions = SamplerOptions(), on_window=None) -> Motion:
        return sample_motion(self.networks.lmdm, portrait, features, emotion, options, on_window)

    def render(self, portrait: Portrait, motion: Motion, options: RenderOptions = RenderOptions(), **kwargs):
        return render_frames(self.networks, portrait, motion, options, **kwargs)


def motion_from_video(frames, motion_extractor, face_models: FaceModels, fps: float = 25.0,
                      options: RegistrationOptions = RegistrationOptions(video_smoothing=1), check=None) -> Motion:
    """Motion performed in a driving video (LivePortrait-style): the motion extractor's pose, expression,
    translation and scale for every frame, face tracked from frame to frame; the first frame is the anchor, so
    relative driving transfers the change from it. ``options.video_smoothing`` > 1 smooths it."""
    from .motion.motion import keypoint_fields_to_vector
    from .portrait.registration import extract_motion_keypoints, moving_average

    keypoints = extract_motion_keypoints(frames, motion_extractor, face_models, options, check)
    vectors = keypoint_fields_to_vector({k: v for k, v in keypoints.items() if k != "kp"})
    if options.video_smoothing > 1:
        vectors = moving_average(vectors, options.video_smoothing)
    return Motion(frames=vectors, fps=fps, metadata={"source": "driving-video", "frames": len(vectors)})
