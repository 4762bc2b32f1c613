"""``<admin-prefix>/metrics``: the Stats snapshot in Prometheus text format.

A custom collector on a dedicated ``CollectorRegistry`` (never the global
one: an app's own prometheus-client metrics stay out, and two runtimes in
one test process do not collide) turns one snapshot into metric families,
so the metrics can never disagree with the stats page.

Every metric name is in :data:`METRICS` (the README's table comes from it).
Labels: ``kind`` (what a connection or request spoke), ``tls`` ("true" or
"false"), ``outcome`` (a termination reason, an HTTP status class, a sniff
result or a handshake result).
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from .stats import peer_up

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: name (as exposed) -> (type, labels, help)
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "monoport_info": ("info", ("instance", "cluster", "version"), "instance id, cluster and monoport version"),
    "monoport_uptime_seconds": ("gauge", (), "seconds since the process started"),
    "monoport_draining": ("gauge", (), "1 while shutting down gracefully"),
    "monoport_lagging": ("gauge", (), "1 while the event loop lags over --max-lag (new work goes to peers)"),
    "monoport_app_requests": ("gauge", (), "HTTP requests inside the app right now (Socket.IO excluded)"),
    "monoport_ready": ("gauge", (), "1 once listeners, Redis and sibling workers are in place (health answers 200)"),
    "monoport_max_connections": ("gauge", (), "--max-conns (absent when unlimited)"),
    "monoport_connections": ("gauge", (), "client connections served by this instance (what --max-conns limits)"),
    "monoport_open_connections": ("gauge", ("kind", "tls"), "open client sockets by what they speak"),
    "monoport_forwarded_connections": ("gauge", ("direction",), "open connections forwarded in from / out to peers"),
    "monoport_connections_opened_total": ("counter", (), "connections accepted"),
    "monoport_connections_closed_total": ("counter", ("kind", "tls", "outcome"),
                                          "connections ended, by final kind and termination reason"),
    "monoport_forwarded_connections_total": ("counter", ("direction",), "connections forwarded in / out"),
    "monoport_connection_duration_seconds": ("histogram", (), "lifetime of ended connections"),
    "monoport_received_bytes_total": ("counter", (), "payload bytes received from clients (after TLS)"),
    "monoport_sent_bytes_total": ("counter", (), "payload bytes sent to clients (before TLS)"),
    "monoport_sniff_total": ("counter", ("outcome",), "what the protocol sniffer decided"),
    "monoport_tls_handshakes_total": ("counter", ("outcome",), "TLS handshakes: ok, or the failure reason"),
    "monoport_tls_handshake_duration_seconds": ("histogram", (), "TLS handshake time, failed ones included"),
    "monoport_http_requests_total": ("counter", ("kind", "tls", "outcome"),
                                     "HTTP requests by transport (http, polling, websocket) and status class"),
    "monoport_http_request_duration_seconds": ("histogram", (), "HTTP request handling time (WebSocket upgrades excluded)"),
    "monoport_errors_total": ("counter", ("reason",), "errors by reason"),
    "monoport_socketio_sessions": ("gauge", (), "Engine.IO sessions on this instance"),
    "monoport_socketio_rooms": ("gauge", (), "Socket.IO rooms made by the app on this instance"),
    "monoport_socketio_recovered_total": ("counter", (), "Socket.IO sessions recovered (--recovery)"),
    "monoport_socketio_recovery_failed_total": ("counter", ("reason",),
                                                "recovery attempts that gave a fresh session, by reason"),
    "monoport_socketio_replayed_packets_total": ("counter", (), "packets replayed to recovered sessions"),
    "monoport_peer_up": ("gauge", ("peer",), "1 when the peer is healthy"),
    "monoport_peer_connections": ("gauge", ("peer",), "the peer's own connection count, as last polled"),
    "monoport_event_loop_lag_seconds": ("gauge", (), "how late the last short sleep woke up"),
    "monoport_event_loop_lag_max_seconds": ("gauge", (), "the worst lag seen since start"),
    "monoport_acme_certificate_info": ("info", ("names", "issuer"), "--acme: each certificate's names and issuer"),
    "monoport_acme_certificate_expiry_seconds": ("gauge", ("names",),
                                                 "--acme: seconds until the served certificate expires"),
    "monoport_acme_certificate_renewal_seconds": ("gauge", ("names",),
                                                  "--acme: seconds until the next order or renewal attempt"),
    "monoport_acme_failed_attempts": ("gauge", ("names",),
                                      "--acme: failed attempts since the last certificate (0 when current)"),
}

#: present only with --recovery
RECOVERY_METRICS = frozenset({"monoport_socketio_recovered_total", "monoport_socketio_recovery_failed_total",
                              "monoport_socketio_replayed_packets_total"})

#: kinds whose bytes are TLS-protected
TLS_KINDS = frozenset({"tls", "https", "wss", "polling-tls", "raw-tls", "raw-tls-silent", "flash-tls"})


def _flag(value: Any) -> str:
    return "true" if value else "false"


def _family(name: str) -> Any:
    # Any, not Metric: the four families' add_metric take different arguments, and which
    # family this is depends on METRICS[name], which the type checker cannot follow.
    kind, labels, doc = METRICS[name]
    if kind == "counter":
        return CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)
    if kind == "histogram":
        return HistogramMetricFamily(name, doc, labels=labels)
    if kind == "info":
        return InfoMetricFamily(name.removesuffix("_info"), doc, labels=labels)
    return GaugeMetricFamily(name, doc, labels=labels)


def _histogram(name: str, snap: dict[str, Any]) -> Metric:
    family = _family(name)
    buckets = [(str(float(le)) if le != "+Inf" else "+Inf", count) for le, count in snap["buckets"]]
    family.add_metric([], buckets, snap["sum"])
    return family


def _single(name: str, value: float) -> Metric:
    family = _family(name)
    family.add_metric([], value)
    return family


def _labelled(name: str, rows: list[tuple[list[str], float]]) -> Metric:
    family = _family(name)
    for labels, value in rows:
        family.add_metric(labels, value)
    return family


def families(snap: dict[str, Any]) -> Iterator[Metric]:
    """Metric families for one snapshot."""
    info = _family("monoport_info")
    info.add_metric([], {"instance": snap["id"], "cluster": snap["cluster"], "version": snap["version"]})
    yield info
    yield _single("monoport_uptime_seconds", snap["uptime"])
    yield _single("monoport_draining", 1 if snap["draining"] else 0)
    yield _single("monoport_ready", 1 if snap["ready"] else 0)
    yield _single("monoport_lagging", 1 if snap["lagging"] else 0)
    yield _single("monoport_app_requests", snap["in_app"])
    if snap["max_conns"] is not None:
        yield _single("monoport_max_connections", snap["max_conns"])
    conns = snap["connections"]
    yield _single("monoport_connections", conns["live"])
    yield _labelled("monoport_open_connections",
                    [([kind, _flag(kind in TLS_KINDS)], n) for kind, n in conns["by_kind"].items()])
    yield _labelled("monoport_forwarded_connections",
                    [(["in"], conns["forwarded_in_live"]), (["out"], conns["forwarded_out_live"])])
    yield _single("monoport_connections_opened_total", conns["opened_total"])
    yield _labelled("monoport_connections_closed_total",
                    [([row["kind"], _flag(row["tls"]), row["termination"]], row["count"]) for row in conns["closed"]])
    yield _labelled("monoport_forwarded_connections_total",
                    [([direction], n) for direction, n in conns["forwarded_total"].items()])
    yield _histogram("monoport_connection_duration_seconds", conns["seconds"])
    yield _single("monoport_received_bytes_total", snap["bytes"]["in"])
    yield _single("monoport_sent_bytes_total", snap["bytes"]["out"])
    yield _labelled("monoport_sniff_total", [([outcome], n) for outcome, n in snap["sniff"].items()])
    yield _labelled("monoport_tls_handshakes_total", [([outcome], n) for outcome, n in snap["tls"]["handshakes"].items()])
    yield _histogram("monoport_tls_handshake_duration_seconds", snap["tls"]["seconds"])
    yield _labelled("monoport_http_requests_total",
                    [([row["transport"], _flag(row["tls"]), row["status"]], row["count"]) for row in snap["http"]["requests"]])
    yield _histogram("monoport_http_request_duration_seconds", snap["http"]["seconds"])
    yield _labelled("monoport_errors_total", [([reason], n) for reason, n in snap["errors"].items()])
    yield _single("monoport_socketio_sessions", snap["socketio"]["sessions"])
    yield _single("monoport_socketio_rooms", snap["socketio"]["rooms"])
    rec = snap["extra"].get("recovery")
    if rec is not None:
        yield _single("monoport_socketio_recovered_total", rec["recovered"])
        yield _labelled("monoport_socketio_recovery_failed_total", [([why], n) for why, n in rec["failures"].items()])
        yield _single("monoport_socketio_replayed_packets_total", rec["replayed"])
    peers = snap["peers"]
    yield _labelled("monoport_peer_up", [([name], 1 if peer_up(info) else 0) for name, info in peers.items()])
    yield _labelled("monoport_peer_connections",
                    [([name], info["conns"]) for name, info in peers.items() if isinstance(info.get("conns"), (int, float))])
    yield _single("monoport_event_loop_lag_seconds", snap["event_loop"]["lag"])
    yield _single("monoport_event_loop_lag_max_seconds", snap["event_loop"]["lag_max"])
    certs = snap.get("extra", {}).get("acme")
    if certs is not None:
        yield from _acme(certs)


def _acme(certs: list[dict[str, Any]]) -> Iterator[Metric]:
    info = _family("monoport_acme_certificate_info")
    for cert in certs:
        info.add_metric([], {"names": ",".join(cert["names"]), "issuer": cert["issuer"]})
    yield info
    yield _labelled("monoport_acme_certificate_expiry_seconds",
                    [([",".join(c["names"])], c["expires_in"]) for c in certs if c["expires_in"] is not None])
    yield _labelled("monoport_acme_certificate_renewal_seconds", [([",".join(c["names"])], c["renew_in"]) for c in certs])
    yield _labelled("monoport_acme_failed_attempts", [([",".join(c["names"])], c["failures"]) for c in certs])


class _SnapshotCollector:
    def __init__(self, snap: dict[str, Any]) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        return families(self.snap)


def render(snap: dict[str, Any], environ: dict | None = None) -> bytes:
    """Prometheus text exposition of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap))
    return generate_latest(registry)
