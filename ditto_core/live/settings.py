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
    batch_frames: int = 32  # the most frames the device scheduler puts in one warp/decoder call
    batch_windows: int = 8  # the most motion windows it puts in one LMDM call
    ice_servers: tuple[str, ...] = ()  # WebRTC STUN URLs, for the server and the page (none: host candidates only)

    def __post_init__(self):
        self.ice_servers = stun_urls(self.ice_servers)


def stun_urls(urls) -> tuple[str, ...]:
    """The STUN URLs given (``stun:host[:port]``, ``stuns:…``); ValueError for anything else: a browser refuses a
    TURN server without its user name and password, which a URL cannot carry, and would fail every session."""
    urls = tuple(urls)
    for url in urls:
        if not isinstance(url, str) or not url.startswith(("stun:", "stuns:")):
            raise ValueError(f"ICE server {url!r}: only STUN URLs (stun:host:port) are supported; TURN servers "
                             f"need a user name and password, which the live server does not take yet")
    return urls
