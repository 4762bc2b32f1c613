"""The one Config: every option declared once, with its flags, help, environment names and parser.

Every option is a field of :class:`Config` whose metadata carries its flags,
help, environment variable and parser; the argparse CLI, the environment
reader (:mod:`monoport.config_sources`) and the README's flag table are all
generated from those fields, so an option is written down exactly once. The
parsers of single values and the checks across options live in
:mod:`monoport.config_values`. Turning a Config into live objects (SSL
contexts, the app) is a separate step (:mod:`monoport.runtime`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .config_values import (
    LETSENCRYPT_PRODUCTION,
    HostPort,
    parse_admin_prefix,
    parse_cluster,
    parse_count,
    parse_credentials,
    parse_directory,
    parse_domains,
    parse_duration,
    parse_hostport,
    parse_instance_id,
    parse_network,
    parse_origin,
    parse_port,
    parse_rate,
    parse_raw,
    parse_redis_url,
    parse_retry,
    parse_sibling,
    parse_sio_path,
    parse_wait,
)

ENV_PREFIX = "MONOPORT_"
#: What ``--app`` means when it is not given (the demo app in webapp/); appload imports it.
DEFAULT_APP_SPEC = "webapp"


def option(
    default: Any,
    *flags: str,
    help: str,
    parse: Callable[[str], Any] = str,
    repeat: bool = False,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
    switch: bool = False,
    env: Sequence[str] = (),
) -> Any:
    """Declare one option. ``flags[0]`` is its canonical name; ``env`` adds
    environment names honoured besides ``MONOPORT_<FLAG>`` (gunicorn habits)."""
    meta = dict(
        flags=flags, help=help, parse=parse, repeat=repeat, choices=choices,
        metavar=metavar, switch=switch, env=tuple(env),
    )
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for repeatable defaults")
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    """Every setting of one monoport process."""

    bind: tuple[HostPort, ...] = option(
        (("127.0.0.1", 8443),), "--bind", "-b", parse=parse_hostport, repeat=True,
        metavar="HOST:PORT",
        help="address to listen on (repeatable); default 127.0.0.1:8443, or 0.0.0.0:$PORT when PORT is set",
    )
    app: str | None = option(
        None, "--app", metavar="MODULE:ATTR",
        help="the WSGI/Flask app, or a module holding it; default: the demo app in webapp/",
    )
    sio: str | None = option(
        None, "--sio", metavar="MODULE:ATTR",
        help="the socketio.Server; default: app.extensions['socketio'] or the module's `sio`",
    )
    sio_path: tuple[str, ...] = option(
        ("/socket.io/",), "--sio-path", parse=parse_sio_path, repeat=True, metavar="PATH",
        help="URL path under which Socket.IO is served (repeatable)",
    )
    tls: str = option(
        "auto", "--tls", choices=("auto", "on", "off"),
        help="auto: use --cert if given, else off when PORT is set, else a dev certificate",
    )
    cert: tuple[str, ...] = option(
        (), "--cert", "--certfile", repeat=True, metavar="FILE",
        help="PEM certificate chain (repeatable, paired with --key; SNI picks, the first is the default)",
    )
    key: tuple[str, ...] = option(
        (), "--key", "--keyfile", repeat=True, metavar="FILE", help="PEM private key for the --cert at the same position",
    )
    certs_dir: str = option("certs", "--certs-dir", metavar="DIR", help="where dev certificates and ACME state (account, certificates) are created and kept")
    strict_sni: bool = option(
        False, "--strict-sni", switch=True,
        help="refuse TLS handshakes whose SNI names no configured certificate (default: use the first)",
    )
    acme: tuple[tuple[str, ...], ...] = option(
        (), "--acme", parse=parse_domains, repeat=True, metavar="DOMAIN[,DOMAIN...]",
        help="get and renew a certificate for DOMAIN from an ACME CA (repeatable: one certificate "
        "each; comma-separated names share one); TLS-ALPN-01 is answered on the serving port",
    )
    acme_email: str | None = option(
        None, "--acme-email", metavar="EMAIL", help="contact address given to the ACME CA (expiry notices)",
    )
    acme_directory: str = option(
        LETSENCRYPT_PRODUCTION, "--acme-directory", parse=parse_directory, metavar="URL|staging",
        help="the ACME CA's directory URL; 'staging' names Let's Encrypt's staging CA "
        "(default: Let's Encrypt production)",
    )
    acme_ca_bundle: str | None = option(
        None, "--acme-ca-bundle", metavar="FILE",
        help="PEM CA certificates to trust for the ACME directory's own HTTPS (a private or test CA)",
    )
    acme_agree_tos: bool = option(
        False, "--acme-agree-tos", switch=True,
        help="agree to the ACME CA's terms of service (required with Let's Encrypt production)",
    )
    acme_challenge: tuple[str, ...] = option(
        ("tls-alpn-01", "http-01"), "--acme-challenge", repeat=True, choices=("tls-alpn-01", "http-01"),
        help="challenge types to answer, in order of preference (repeatable): tls-alpn-01 on the TLS port, "
        "http-01 on any port that gets clear-text HTTP (e.g. --bind 0.0.0.0:80; needed behind a proxy that ends TLS)",
    )
    acme_retry: tuple[float, float] = option(
        (60.0, 21600.0), "--acme-retry", parse=parse_retry, metavar="MIN:MAX",
        help="seconds between attempts after a failed order or renewal, doubling from MIN to MAX",
    )
    hsts: int | None = option(
        None, "--hsts", parse=parse_count, metavar="SECONDS",
        help="send Strict-Transport-Security: max-age=SECONDS on HTTPS answers (default: not sent)",
    )
    plain: str = option(
        "redirect", "--plain", choices=("redirect", "serve", "reject"),
        help="what clear-text HTTP gets on a TLS port: 301 to https, served, or 400",
    )
    sniff_timeout: float = option(
        2.0, "--sniff-timeout", parse=parse_duration, metavar="SECONDS",
        help="wait this long for a client's first bytes before treating it as raw TCP "
        "(covers one retransmission of a lost first segment)",
    )
    handshake_timeout: float = option(
        10.0, "--handshake-timeout", parse=parse_duration, metavar="SECONDS", help="deadline for a TLS handshake",
    )
    head_timeout: float = option(
        10.0, "--head-timeout", parse=parse_duration, metavar="SECONDS",
        help="deadline for a whole HTTP request head, from its first byte",
    )
    keepalive_timeout: float = option(
        30.0, "--keepalive-timeout", "--keep-alive", parse=parse_duration, metavar="SECONDS",
        help="close an idle HTTP keep-alive connection after this long",
    )
    body_timeout: float = option(
        30.0, "--body-timeout", parse=parse_duration, metavar="SECONDS",
        help="close a connection whose request body makes no progress for this long",
    )
    max_conns_per_ip: int = option(
        0, "--max-conns-per-ip", parse=lambda text: parse_count(text, allow_zero=True), metavar="N",
        help="open connections one client address may hold (after PROXY); more get 429 (HTTP) "
        "or are closed (raw); 0 = no limit",
    )
    max_payload: int | None = option(
        None, "--max-payload", parse=parse_count, metavar="BYTES",
        help="largest Socket.IO payload (polling POST, WebSocket message, raw line); sets "
        "python-engineio's max_http_buffer_size (default: its 1000000)",
    )
    ping_interval: float | None = option(
        None, "--ping-interval", parse=parse_duration, metavar="SECONDS",
        help="Engine.IO ping interval, fractions allowed (0.3); advertised to clients in milliseconds; "
        "an app that set its own keeps it (default: python-engineio's 25)",
    )
    ping_timeout: float | None = option(
        None, "--ping-timeout", parse=parse_duration, metavar="SECONDS",
        help="how long a client has to answer a ping before its session is closed, fractions allowed; "
        "an app that set its own keeps it (default: python-engineio's 20)",
    )
    cors_origin: tuple[str, ...] = option(
        (), "--cors-origin", parse=parse_origin, repeat=True, metavar="ORIGIN",
        help="also accept Socket.IO requests from this origin (repeatable; '*' for any); default: same origin only",
    )
    flash_policy: str | None = option(
        None, "--flash-policy", metavar="FILE", help="Flash cross-domain policy file (default: allow monoport's ports)",
    )
    no_flash: bool = option(False, "--no-flash", switch=True, help="do not answer Flash policy requests")
    flash_policy_port: int | None = option(
        None, "--flash-policy-port", parse=parse_port, metavar="PORT",
        help="also answer Flash policy requests on this port (Flash asked port 843)",
    )
    raw: str = option(
        "sio", "--raw", parse=parse_raw, metavar="sio|off|HOST:PORT",
        help="what connections that are not TLS, HTTP, PROXY or Flash get (and silent ones after "
        "--sniff-timeout): Socket.IO over newline-framed Engine.IO packets (sio), a splice to a "
        "TCP backend (HOST:PORT), or closed (off)",
    )
    trusted_proxy: tuple[str, ...] = option(
        (), "--trusted-proxy", "--forwarded-allow-ips", parse=parse_network, repeat=True, metavar="CIDR",
        env=("FORWARDED_ALLOW_IPS",),
        help="networks whose PROXY headers and X-Forwarded-For/-Proto are believed (default: none)",
    )
    instance_id: str = option(
        "", "--instance-id", parse=parse_instance_id, metavar="ID",
        help="this instance's id, the prefix of its Socket.IO session ids (default: random)",
    )
    cluster: str = option(
        "", "--cluster", parse=parse_cluster, metavar="NAME",
        help="the deployment this instance belongs to: it scopes peer discovery, the Socket.IO Redis "
        "channel and every Redis key, and peers of another cluster are refused (default: the --app spec)",
    )
    max_conns: int = option(
        10000, "--max-conns", parse=parse_count, metavar="N",
        help="client connections this instance serves itself (keep-alive, WebSocket, raw, forwarded-in); "
        "more spill over to peers, or wait (--queue-timeout); keep it under half the open-files limit",
    )
    max_lag: float | None = option(
        None, "--max-lag", parse=parse_duration, metavar="SECONDS",
        help="while the event loop lags more than this (sustained), new connections and new Socket.IO "
        "sessions spill to the least-loaded peer that is not lagging; e.g. 0.05 (default: off)",
    )
    max_events_per_second: float | None = option(
        None, "--max-events-per-second", parse=parse_rate, metavar="N",
        help="Socket.IO events a session, and a client (its address, or the app's "
        "environ['monoport.identity']), may send per second (bursts of N); more are dropped "
        "with a 'monoport:rate_limited' event (default: no limit)",
    )
    queue_timeout: float = option(
        5.0, "--queue-timeout", parse=parse_wait, metavar="SECONDS",
        help="when this instance and every peer are full, wait this long for a free slot, then 503",
    )
    peer: tuple[HostPort, ...] = option(
        (), "--peer", parse=parse_hostport, repeat=True, metavar="HOST:PORT",
        help="another instance's peer listener (repeatable; with --redis, peers are also discovered)",
    )
    peer_bind: HostPort | None = option(
        None, "--peer-bind", parse=parse_hostport, metavar="HOST:PORT",
        help="listen here for connections forwarded by peers (PROXY v2 first); "
        "default with --redis: a free loopback port",
    )
    peer_advertise: HostPort | None = option(
        None, "--peer-advertise", parse=parse_hostport, metavar="HOST:PORT",
        help="the peer address announced in Redis when --peer-bind listens on all interfaces",
    )
    sibling: tuple[tuple[str, HostPort], ...] = option(
        (), "--sibling", parse=parse_sibling, repeat=True, metavar="ID@HOST:PORT",
        help="set by --workers for its workers: another worker's id and peer listener, routed to "
        "from the first request",
    )
    peer_fd: int | None = option(
        None, "--peer-fd", parse=parse_count, metavar="FD",
        help="set by --workers for its workers: the peer listener, an inherited listening socket",
    )
    redis: str | None = option(
        None, "--redis", parse=parse_redis_url, metavar="URL", env=("REDIS_URL",),
        help="Redis for Socket.IO messages between instances and peer discovery (default: $REDIS_URL)",
    )
    recovery: float = option(
        0.0, "--recovery", parse=lambda text: parse_duration(text, zero=True), metavar="SECONDS",
        help="Socket.IO connection state recovery: keep a client's id, rooms and missed events this long "
             "after an unexpected disconnection (0: off; appends an offset argument to events, see README)",
    )
    workers: int = option(
        1, "--workers", "-w", parse=parse_count, metavar="N",
        help="run N worker processes sharing the port (SO_REUSEPORT), peers of each other; needs --redis; "
        "WEB_CONCURRENCY is honoured only with Redis",
    )
    reuse_port: bool = option(
        False, "--reuse-port", switch=True,
        help="bind the public port with SO_REUSEPORT so other processes can share it (set for workers)",
    )
    drain_delay: float = option(
        0.0, "--drain-delay", parse=lambda text: parse_duration(text, zero=True), metavar="SECONDS",
        help="on SIGTERM, keep accepting this long while health answers 503, so that a load balancer "
             "stops sending before the listener closes",
    )
    graceful_timeout: float = option(
        10.0, "--graceful-timeout", parse=parse_duration, metavar="SECONDS",
        help="on SIGTERM, wait this long for in-flight requests before exiting",
    )
    admin_prefix: str = option(
        "/monoport", "--admin-prefix", parse=parse_admin_prefix, metavar="PATH",
        help="URL prefix of the admin pages (health, stats, stats.json, metrics)",
    )
    stats_auth: str | None = option(
        None, "--stats-auth", parse=parse_credentials, metavar="USER:PASSWORD",
        help="HTTP Basic credentials for the stats pages and metrics (default: loopback clients only)",
    )
    access_log: str | None = option(
        None, "--access-log", metavar="FILE|-",
        help="write one line per connection and per HTTP request to FILE (- for stderr); SIGUSR1 reopens it",
    )
    log_format: str = option(
        "text", "--log-format", choices=("text", "json"), help="format of the access log lines",
    )
    log_level: str = option(
        "info", "--log-level", choices=("debug", "info", "warning", "error"), help="logging threshold",
    )

    # ------------------------------------------------------------------ derived
    @property
    def ports(self) -> list[int]:
        return [port for _, port in self.bind]

    @property
    def cluster_name(self) -> str:
        """``--cluster``, else the app spec: two different apps on one Redis never meet by accident."""
        return self.cluster or self.app or DEFAULT_APP_SPEC


def options() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Config) if f.metadata.get("flags")]


def env_names(f: dataclasses.Field) -> tuple[str, ...]:
    return (ENV_PREFIX + f.name.upper(),) + tuple(f.metadata["env"])


def tls_mode(config: Config, environ: Mapping[str, str] | None = None) -> str:
    """Resolve ``--tls auto``: 'certs' (given files), 'dev' (generated) or 'off'."""
    environ = os.environ if environ is None else environ
    if config.tls == "off":
        return "off"
    if config.acme:
        return "acme"
    if config.cert:
        return "certs"
    if config.tls == "auto" and environ.get("PORT"):
        return "off"
    return "dev"
