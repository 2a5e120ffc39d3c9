"""Motion: conditions, LMDM sampling, the Motion data type, controls, and driving keypoints."""

from .conditions import EMOTIONS, ConditionError, build_conditions, emotion_timeline, emotion_vector
from .drive import DriveOptions
from .motion import Motion, MotionFileError
from .sampler import MotionChain, SamplerOptions, WindowSampler, sample_offline

__all__ = [
    "EMOTIONS",
    "ConditionError",
    "DriveOptions",
    "Motion",
    "MotionChain",
    "MotionFileError",
    "SamplerOptions",
    "WindowSampler",
    "build_conditions",
    "emotion_timeline",
    "emotion_vector",
    "sample_offline",
]
