"""The app's Socket.IO server made ready for monoport, once, before it serves anyone:
self-routing session ids, the flags' limits, the guards and the conformance layer,
the event-rate limit and connection state recovery."""

from __future__ import annotations

from typing import Any

from . import cluster, eioconform, eventrate, recovery, sioguard
from .config import Config
from .ops.stats import Stats


def embed_instance_id(sio: Any, instance_id: str) -> None:
    """Make Engine.IO session ids ``<instance-id>.<random>`` (self-routing sessions)."""
    eio = sio.eio
    original = type(eio).generate_id

    def generate_id() -> str:
        return f"{instance_id}.{original(eio)}"

    eio.generate_id = generate_id


def apply_sio_limits(sio: Any, config: Config) -> None:
    """--max-payload and --cors-origin, set on the Engine.IO server before it serves anyone.

    Without --cors-origin the app's own ``cors_allowed_origins`` stays (python-engineio's
    default, None, is same-origin only); monoport never widens it on its own.
    """
    eio = sio.eio
    if config.max_payload is not None:
        eio.max_http_buffer_size = config.max_payload
    if config.cors_origin:
        eio.cors_allowed_origins = "*" if "*" in config.cors_origin else list(config.cors_origin)


def prepare(sio: Any, config: Config, stats: Stats) -> recovery.Recovery | None:
    """Everything above, in order; returns the --recovery object, or None."""
    embed_instance_id(sio, config.instance_id)
    apply_sio_limits(sio, config)
    sioguard.guard(sio)
    eioconform.install(sio, config.ping_interval, config.ping_timeout)
    sioguard.quiet_unknown_sessions(sio)
    if config.max_events_per_second:
        eventrate.install(sio, config.max_events_per_second, lambda: stats.error("event_rate_limited"))
    if not config.recovery:
        return None
    found = recovery.install(sio, config.recovery, config.redis,
                             key_prefix=cluster.key_prefix(config.cluster_name), instance_id=config.instance_id)
    stats.sources["recovery"] = found.snapshot
    return found
