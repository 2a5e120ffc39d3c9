"""How the live endpoint behaves, and whether an address to listen on is this machine's own."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to listen on) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class LiveSettings:
    """How the live endpoint behaves; see ``python -m ditto_core live --help``."""

    max_sessions: int = 2
    token: str | None = None  # when set, every session must send it (start message or ?token=)
    allowed_origins: tuple[str, ...] = ()  # page origins allowed besides the server's own
    refusal: str | None = None  # when set, every connection gets this error (e.g. exposed without a token)
    max_message_bytes: int = 1 << 20
    idle_timeout_s: float = 60.0  # no message for this long: the session ends with an error
    max_backlog_s: float = 600.0  # audio received but not yet processed
    max_unsent_frames: int = 100  # frames made but not yet sent (the worker waits when the client reads slowly)
    jpeg_quality: int = 85
    sampler: object = None  # SamplerOptions: None keeps the release's online cfg (the seed comes from the client)
    render: object = None  # RenderOptions: None keeps the release's online cfg
    default_emotion: str | None = None
    admit_by_capacity: bool = True  # refuse a session the device could not keep at 25 frames/s (as measured)
    batch_frames: int = 32  # the most frames the render scheduler puts in one warp/decoder call
    ice_servers: tuple[str, ...] = ()  # WebRTC STUN/TURN URLs (none: host candidates only, a LAN or this machine)
