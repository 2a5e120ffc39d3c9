"""The live WebSocket protocol's words: the start message, the frame header, the error the client is told."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

ENDPOINT = "/ditto/live"
FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
MIN_RATE, MAX_RATE = 8000, 96000
FRAME_HEADER = struct.Struct("<I")
START_EXAMPLE = '{"type": "start", "sample_rate": 16000, "format": "s16le"}'
OFFER_EXAMPLE = '{"type": "offer", "sdp": "v=0…"}'


class LiveError(Exception):
    """A problem the client is told about (what is wrong and what to do); the connection then closes."""


class _Stopped(BaseException):
    """Raised inside a session's worker once it has been told to stop (client gone, server closing)."""


@dataclass(kw_only=True)
class SessionOptions:
    """What a session starts with besides its transport's own fields (see :func:`session_options`)."""

    portrait: str | None = None
    emotion: str | None = None
    seed: int = 0
    token: str | None = None


@dataclass
class StartRequest(SessionOptions):
    sample_rate: int
    format: str

    @classmethod
    def parse(cls, text: str) -> "StartRequest":
        message = _message(text, "start", f"the first message must be a JSON start message like {START_EXAMPLE}; got "
                                          f"text that is not JSON",
                           f"the first message must be a start message like {START_EXAMPLE}")
        rate, fmt = message.get("sample_rate"), message.get("format")
        if isinstance(rate, float) and rate.is_integer():
            rate = int(rate)
        if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
            raise LiveError(f"\"sample_rate\" must be a whole number of samples per second from {MIN_RATE:,} to "
                            f"{MAX_RATE:,}; got {rate!r}")
        if fmt not in FORMATS:
            raise LiveError(f"\"format\" must be \"s16le\" (16-bit signed little-endian) or \"f32le\" (32-bit float "
                            f"little-endian), mono; got {fmt!r}")
        return cls(rate, fmt, **session_options(message))


@dataclass
class OfferRequest(SessionOptions):
    """A WebRTC offer (``POST <prefix>/offer``): the browser's SDP and the start message's optional fields."""

    sdp: str

    @classmethod
    def parse(cls, text: str) -> "OfferRequest":
        message = _message(text, "offer", f"the offer must be JSON like {OFFER_EXAMPLE}; got a body that is not JSON",
                           f"the offer must be JSON like {OFFER_EXAMPLE}")
        sdp = message.get("sdp")
        if not isinstance(sdp, str) or not sdp.startswith("v=0"):
            raise LiveError("\"sdp\" must be the session description of the browser's offer "
                            "(RTCPeerConnection.createOffer(), then localDescription.sdp)")
        return cls(sdp, **session_options(message))


def _message(text: str, kind: str, not_json: str, not_kind: str) -> dict:
    """``text`` as a JSON object of type ``kind``; LiveError(``not_json``) or LiveError(``not_kind``) otherwise."""
    try:
        message = json.loads(text)
    except ValueError:
        raise LiveError(not_json) from None
    if not isinstance(message, dict) or message.get("type") != kind:
        raise LiveError(not_kind)
    return message


def session_options(message: dict) -> dict:
    """The optional fields a session starts with (``portrait``, ``emotion``, ``seed``, ``token``), checked."""
    for key in ("portrait", "emotion", "token"):
        if message.get(key) is not None and not isinstance(message[key], str):
            raise LiveError(f"\"{key}\" must be a string")
    seed = message.get("seed", 0)
    if seed is None:
        seed = 0
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise LiveError(f"\"seed\" must be a whole number ≥ 0; got {seed!r}")
    return {"portrait": message.get("portrait"), "emotion": message.get("emotion"), "seed": seed,
            "token": message.get("token")}
