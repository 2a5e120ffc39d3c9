"""The whole chain in one object: register a portrait, encode speech, sample motion, render frames, each stage
set up the way the release's configuration (``ditto_cfg``) says."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .audio import AudioClip, AudioFeatures, extract_features, load_audio
from .audio.encoders import load_encoder
from .config_pickle import ConfigFileError
from .motion.blinks import add_blinks, plan_blinks
from .motion.conditions import build_conditions, describe_emotion, emotion_timeline, parse_emotion
from .motion.motion import Motion
from .motion.sampler import MotionChain, SamplerOptions, WindowSampler, capture_window_graphs, first_frame_vector
from .networks import DittoNetworks, load_networks
from .portrait import FaceModels, Portrait, RegistrationOptions, load_face_models, register_portrait
from .portrait.images import to_rgb_frames
from .portrait.registration import SourceTimeline
from .release_config import ReleaseConfig, load_configs, missing_config_message
from .render import RenderOptions, render_frames, render_one
from .video import VIDEO_SUFFIXES, read_video


@dataclass(frozen=True)
class ConditionSource:
    """What the LMDM's conditions read of the source: eye state per source frame, canonical keypoints and the
    first window's condition frame; the portrait's, or the release's stored source (``ch_info``) when set.

    eye_open ``[F, 2]``; eye_ball ``[F, 6]``; canonical_kp ``[63]``; first_frame ``[265]``; timeline: which source
    frame each output frame shows.
    """

    eye_open: np.ndarray
    eye_ball: np.ndarray
    canonical_kp: np.ndarray
    first_frame: torch.Tensor
    timeline: SourceTimeline
    eyes_from_first_frame: bool = False  # eye_f0_mode: every frame uses source frame 0's eye state

    @classmethod
    def of(cls, portrait: Portrait, config: ReleaseConfig) -> "ConditionSource":
        stored = config.canonical
        if stored is None:
            return cls(portrait.eye_open, portrait.eye_ball, portrait.canonical_kp,
                       first_frame_vector(portrait.keypoints), portrait.timeline, config.eye_first_frame_only)
        return cls(stored.eye_open, stored.eye_ball, stored.canonical_kp, first_frame_vector(stored.keypoints),
                   SourceTimeline(len(stored.eye_open)), config.eye_first_frame_only)

    def eye_rows(self, start: int, stop: int, fps: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
        """Eye-open ``[n, 2]`` and eye-ball ``[n, 6]`` for frames ``start:stop`` at ``fps`` (a video source's
        frame at each one's time, looped as the portrait says; negative indices, the online pre-roll, use frame
        0)."""
        index = [0 if self.eyes_from_first_frame else self.timeline.frame(i, fps) for i in range(start, stop)]
        return self.eye_open[index], self.eye_ball[index]


def motion_conditions(source: ConditionSource, audio: torch.Tensor, emotion, cond_dim: int, start: int = 0,
                      fps: float = 25.0, parts=None) -> torch.Tensor:
    """The LMDM's conditions ``[n, cond_dim]`` for frames ``start:start+n`` given their audio rows ``[n, 1024]``
    (negative frame indices: the online pre-roll, conditioned like frame 0)."""
    stop = start + len(audio)
    eye_open, eye_ball = source.eye_rows(start, stop, fps)
    emotion_rows = emotion_timeline(emotion, max(stop, 1), fps)[[max(i, 0) for i in range(start, stop)]]
    return build_conditions(audio, emotion_rows, eye_open, eye_ball, source.canonical_kp, cond_dim, parts)


class MotionPlan:
    """One sampling run resolved from a configuration and the user's choices: conditions, the window chain, the
    blink schedule and what the Motion records. Offline sampling and streaming both use it.

    emotion None and options' None fields keep the configuration's values; clip_frames: the clip's length when
    known (None when streaming live: the blink schedule then repeats every N_d or 3000 frames).
    """

    def __init__(self, lmdm, portrait: Portrait, config: ReleaseConfig, emotion=None,
                 options: SamplerOptions | None = None, clip_frames: int | None = None, online: bool = False):
        options = options or SamplerOptions()
        self.lmdm, self.config, self.online = lmdm, config, online
        self.chain_config = options.apply(config.chain)
        self.seed = options.seed
        if isinstance(emotion, str):
            emotion = parse_emotion(emotion)  # the one parser the CLI and the nodes use too
        self.emotion = config.emotion if emotion is None else emotion
        self.source = ConditionSource.of(portrait, config)
        drive_eyes = config.drive.eyes_driven(portrait.is_video)
        blinks = config.blinks
        self.blinks = (plan_blinks(blinks.template, blinks.open_frames, blinks.schedule_frames, clip_frames, self.seed)
                       if blinks.enabled and drive_eyes else None)

    def conditions(self, audio: torch.Tensor, start: int = 0, fps: float = 25.0) -> torch.Tensor:
        return motion_conditions(self.source, audio, self.emotion, self.lmdm.config.cond_dim, start, fps,
                                 self.config.parts)

    def chain(self, on_window=None) -> MotionChain:
        sampler = WindowSampler(self.lmdm, self.chain_config.steps, self.seed)
        return MotionChain(sampler, self.source.first_frame, self.chain_config, online=self.online,
                           on_window=on_window)

    def finish(self, frames: torch.Tensor, anchor: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Final motion frames ``[m, 265]`` (clip frames ``start …``) with the release's blinks written in."""
        if self.blinks is None or len(frames) == 0:
            return frames
        return add_blinks(frames, anchor, self.blinks, start)

    def metadata(self, audio_seconds: float) -> dict:
        """What a sampled Motion records of how it was made: the configuration file and its sha256, every
        effective chain setting, the emotion and the blink schedule."""
        return {"source": "ditto-lmdm", "config": Path(self.config.name).name, "config_sha256": self.config.sha256,
                "seed": self.seed, "emotion": describe_emotion(self.emotion), **self.chain_config.settings(),
                "blinks": self.blinks.metadata() if self.blinks is not None else None,
                "audio_seconds": audio_seconds}


def sample_motion(lmdm, portrait: Portrait, features: AudioFeatures, config: ReleaseConfig, emotion=None,
                  options: SamplerOptions | None = None, on_window=None) -> Motion:
    """Offline motion for the whole audio: ``features.num_frames`` frames at 25 fps. ``on_window`` is called
    after each 80-frame window."""
    plan = MotionPlan(lmdm, portrait, config, emotion, options, clip_frames=features.num_frames)
    chain = plan.chain(on_window)
    frames = torch.cat([chain.push(plan.conditions(features.frames, fps=features.fps)), chain.finish()])
    return Motion(frames=plan.finish(frames, chain.anchor), fps=features.fps, anchor=chain.anchor,
                  metadata=plan.metadata(features.duration_s))


@dataclass
class DittoPipeline:
    """The release's networks, face models, audio encoder and configuration (the offline cfg, and the online
    one for realtime sessions), with each stage as a method. Defaults are the release's, as released."""

    networks: DittoNetworks
    face_models: FaceModels
    encoder: object
    config: ReleaseConfig = field(default_factory=ReleaseConfig.code_defaults)
    online_config: ReleaseConfig | None = None

    @classmethod
    def load(cls, root: str | Path, device: str = "cpu", audio_backend: str = "onnx",
             hubert_dir: str | Path | None = None, code_defaults: bool = False) -> "DittoPipeline":
        """Load the release under ``root``. ``code_defaults``: ignore the release cfg and use the reference
        code's built-in settings (not what official Ditto does; for comparison or a release without ditto_cfg)."""
        config, online_config = load_configs(root, code_defaults)
        networks = load_networks(root, device)
        configs = [each for each in (config, online_config) if each is not None]
        for each in configs:
            each.check_model(networks.lmdm.config)
        # on CUDA, each configuration's motion windows replay as one CUDA graph, captured now, while nothing else
        # uses the GPU (a memory manager that moves the networks later gets eager windows)
        capture_window_graphs(networks.lmdm, sorted({each.chain.steps for each in configs}))
        return cls(
            networks=networks,
            face_models=load_face_models(root, device),
            encoder=load_encoder(audio_backend, release_root=root, hubert_dir=hubert_dir, device=device),
            config=config,
            online_config=online_config,
        )

    def registration_options(self, **overrides) -> RegistrationOptions:
        """The configuration's registration settings with the given (non-None) ones changed."""
        return replace(self.config.registration, **{k: v for k, v in overrides.items() if v is not None})

    def render_options(self, stitching: bool | None = None, online: bool = False, **overrides) -> RenderOptions:
        """RenderOptions driving the configuration's way; ``stitching`` None keeps the configuration's."""
        drive = (self.require_online_config() if online else self.config).drive
        if online:  # the reference's online mode always drives relative to its pre-roll frame, whatever relative_d
            drive = replace(drive, relative=True)
        if stitching is not None:
            drive = replace(drive, stitching=stitching)
        return RenderOptions(drive=drive, **overrides)

    def require_online_config(self) -> ReleaseConfig:
        if self.online_config is None:
            raise ConfigFileError(missing_config_message(self.networks.root, "online_config"))
        return self.online_config

    def register(self, images, options: RegistrationOptions | None = None, fps: float | None = None,
                 check=None) -> Portrait:
        """images: a file path, a PIL image, a numpy array or torch tensor (HWC or CHW, 8/16-bit or float), or a
        batch or list of frames (a source video, at ``fps`` when known)."""
        return register_portrait(images, self.networks.appearance_extractor, self.networks.motion_extractor,
                                 self.face_models, options or self.config.registration, fps, check)

    def register_file(self, path: str | Path, options: RegistrationOptions | None = None, check=None) -> Portrait:
        """An image file, or a video file (its frames read into a disk-backed array, its frame rate kept)."""
        options = options or self.config.registration
        if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
            return self.register(path, options, check=check)
        video = read_video(path, options.max_size, options.max_frames)
        return self.register(video.frames, options, video.fps, check)

    def encode_audio(self, audio) -> tuple[AudioClip, AudioFeatures]:
        clip = audio if isinstance(audio, AudioClip) else load_audio(audio)
        return clip, extract_features(clip, self.encoder)

    def sample(self, portrait: Portrait, features: AudioFeatures, emotion=None,
               options: SamplerOptions | None = None, on_window=None) -> Motion:
        """emotion: None (the release cfg's), a name or index, "happy+surprise", "0:neutral, 2.5:happy", a list
        of labels, 8 weights, or an ``[m, 8]`` sequence."""
        return sample_motion(self.networks.lmdm, portrait, features, self.config, emotion, options, on_window)

    def render(self, portrait: Portrait, motion: Motion, options: RenderOptions | None = None, **kwargs):
        return render_frames(self.networks, portrait, motion, options or self.render_options(), **kwargs)

    def render_frame(self, portrait: Portrait, motion: Motion, index: int,
                     options: RenderOptions | None = None) -> np.ndarray:
        """Frame ``index`` of ``render(portrait, motion, options)`` alone: ``[H, W, 3]`` uint8, equal to that frame
        of the full render exactly (see ``render.render_one``)."""
        return render_one(self.networks, portrait, motion, index, options or self.render_options())

    def motion_of_image(self, image, options: RegistrationOptions | None = None) -> Motion:
        """The head pose and expression of the face in one image (a photo, an image-generation output), as a
        one-frame Motion anchored on itself: a reference for ``controls.apply_reference``, or, made from the
        portrait itself, a still to edit. image: anything ``register`` takes for one image."""
        options = options or self.config.registration
        return motion_from_video(to_rgb_frames(image)[:1], self.networks.motion_extractor, self.face_models,
                                 options=replace(options, video_smoothing=1), source="image")


def motion_from_video(frames, motion_extractor, face_models: FaceModels, fps: float = 25.0,
                      options: RegistrationOptions = RegistrationOptions(video_smoothing=1), check=None,
                      source: str = "driving-video") -> Motion:
    """Motion performed in a driving video (LivePortrait-style): the motion extractor's pose, expression,
    translation and scale for every frame, face tracked from frame to frame; the first frame is the anchor, so
    relative driving transfers the change from it. ``options.video_smoothing`` > 1 smooths it. ``source`` is
    recorded in the metadata."""
    from .motion.motion import keypoint_fields_to_vector
    from .portrait.registration import extract_motion_keypoints, moving_average

    keypoints = extract_motion_keypoints(frames, motion_extractor, face_models, options, check)
    vectors = keypoint_fields_to_vector({k: v for k, v in keypoints.items() if k != "kp"})
    if options.video_smoothing > 1:
        vectors = moving_average(vectors, options.video_smoothing)
    return Motion(frames=vectors, fps=fps, metadata={"source": source, "frames": len(vectors)})
