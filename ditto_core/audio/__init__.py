"""Audio: speech input and its 25-fps HuBERT features."""

from .clip import AudioClip, AudioInputError, load_audio
from .encoders import EncoderError, OnnxHubertEncoder, TorchHubertEncoder
from .features import AudioFeatures, StreamingFeatureExtractor, extract_features

__all__ = [
    "AudioClip",
    "AudioFeatures",
    "AudioInputError",
    "EncoderError",
    "OnnxHubertEncoder",
    "StreamingFeatureExtractor",
    "TorchHubertEncoder",
    "extract_features",
    "load_audio",
]
