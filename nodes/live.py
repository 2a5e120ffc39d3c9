"""Ditto live inside ComfyUI: the ``/ditto/live`` WebSocket endpoint, ``/ditto/live/offer`` (WebRTC) and the page
(``/ditto/live/page/``) on ComfyUI's own server, with portraits from ComfyUI's ``input/`` folder. The models are
the graph's: the release in ``models/ditto/`` as Load Ditto Models gives it (one copy, shared), under ComfyUI's
model management: put on ComfyUI's device as each session starts and kept there while sessions run (an offload
asked for meanwhile happens when the last one ends). The protocol and the page are ``ditto_core.live``'s.

Settings (environment variables, read when ComfyUI starts): ``DITTO_LIVE_TOKEN`` (required when ComfyUI listens
beyond this machine, ``--listen``), ``DITTO_LIVE_MAX_SESSIONS`` (default 2), ``DITTO_LIVE_ALLOW_ORIGINS``
(comma-separated page origins allowed besides ComfyUI's own), ``DITTO_LIVE_ICE_SERVERS`` (comma-separated STUN
URLs for WebRTC beyond a LAN, used by the server and the page alike).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("ditto.live")


def _listen_addresses() -> list[str]:
    try:
        from comfy.cli_args import args
    except ImportError:
        return ["127.0.0.1"]
    listen = getattr(args, "listen", None) or "127.0.0.1"
    return [address.strip() for address in str(listen).split(",") if address.strip()]


def _load_pipeline():
    from comfy import model_management

    from ..ditto_core.models import CheckpointError
    from ..ditto_core.release import PYTORCH_DIR, check_release
    from .memory import shared_pipeline
    from .models import resolve_choice

    folder = resolve_choice(PYTORCH_DIR)
    status = check_release(folder)
    if status.missing:
        raise CheckpointError(f"Ditto live needs the release in models/ditto/:\n{status.report()}")
    return shared_pipeline(folder, model_management.get_torch_device())


def live_settings():
    from ..ditto_core.live import LiveSettings, is_loopback
    from ..ditto_core.live.settings import stun_urls

    token = os.environ.get("DITTO_LIVE_TOKEN") or None
    exposed = [address for address in _listen_addresses() if not is_loopback(address)]
    refusal = None
    if exposed and token is None:
        refusal = (f"ComfyUI listens on {', '.join(exposed)}, reachable from other machines, so Ditto live needs an "
                   f"access token: set DITTO_LIVE_TOKEN before starting ComfyUI, then open the page with ?token=…")
    origins = tuple(o.strip() for o in os.environ.get("DITTO_LIVE_ALLOW_ORIGINS", "").split(",") if o.strip())
    ice_servers = tuple(u.strip() for u in os.environ.get("DITTO_LIVE_ICE_SERVERS", "").split(",") if u.strip())
    try:
        ice_servers = stun_urls(ice_servers)
    except ValueError as exc:
        log.warning("Ditto live: DITTO_LIVE_ICE_SERVERS is left out: %s", exc)
        ice_servers = ()
    return LiveSettings(max_sessions=max(1, int(os.environ.get("DITTO_LIVE_MAX_SESSIONS", "2"))), token=token,
                        allowed_origins=origins, ice_servers=ice_servers, refusal=refusal)


def register_live_routes() -> bool:
    """Add the live routes to ComfyUI's server; False (and nothing done) when there is no ComfyUI server, as
    under the tests' stand-in runtime or when the pack is imported outside ComfyUI."""
    try:
        from server import PromptServer
    except ImportError:
        return False
    instance = getattr(PromptServer, "instance", None)
    if instance is None or getattr(instance, "routes", None) is None:
        return False
    import folder_paths

    from ..ditto_core.live import LiveService, PortraitLibrary
    from .memory import held

    service = LiveService(_load_pipeline, PortraitLibrary(folder=folder_paths.get_input_directory()), live_settings(),
                          hold=held)
    service.add_routes(instance.routes)
    app = getattr(instance, "app", None)
    if app is not None:
        try:
            app.on_shutdown.append(service.on_shutdown)
        except RuntimeError:  # the app is already running (frozen signals): sessions end with the process
            pass
    if service.settings.refusal:
        log.warning("Ditto live: %s", service.settings.refusal)
    return True
