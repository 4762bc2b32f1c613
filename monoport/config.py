"""The one Config: declared once, parsed from defaults < environment < flags.

Every option is a field of :class:`Config` whose metadata carries its flags,
help, environment variable and parser; the argparse CLI, the environment
reader and the README's flag table are all generated from those fields, so
an option is written down exactly once. Turning a Config into live objects
(SSL contexts, the app) is a separate step (:mod:`monoport.runtime`).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .errors import ConfigError

HostPort = tuple[str, int]
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


def parse_hostport(text: str) -> HostPort:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (all interfaces) into a tuple."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def parse_duration(text: str, zero: bool = False) -> float:
    value = float(text.rstrip("s"))
    if not (value >= 0 if zero else value > 0):
        raise ValueError(f"expected a {'' if zero else 'positive '}number of seconds, got {text!r}")
    return value


def parse_rate(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"expected a positive number per second, got {text!r}")
    return value


def parse_port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"expected a port number, got {text!r}")
    return value


def parse_count(text: str, allow_zero: bool = False) -> int:
    value = int(text)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"expected a {'non-negative' if allow_zero else 'positive'} integer, got {text!r}")
    return value


def parse_origin(text: str) -> str:
    """``*`` or ``scheme://host[:port]``, as browsers send it in ``Origin``."""
    if text == "*":
        return text
    scheme, sep, rest = text.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or "/" in rest.rstrip("/"):
        raise ValueError(f"expected * or an origin such as https://example.com, got {text!r}")
    return f"{scheme}://{rest.rstrip('/')}"


def parse_network(text: str) -> str:
    if text == "*":
        return "0.0.0.0/0"
    return str(ipaddress.ip_network(text, strict=False))


def parse_instance_id(text: str) -> str:
    allowed = set(string.ascii_lowercase + string.digits)
    if not 1 <= len(text) <= 16 or not set(text) <= allowed:
        raise ValueError("expected 1-16 characters of [a-z0-9]")
    return text


CLUSTER_CHARS = frozenset(string.ascii_letters + string.digits + "._:-")


def parse_cluster(text: str) -> str:
    if not 1 <= len(text) <= 64 or not set(text) <= CLUSTER_CHARS:
        raise ValueError("expected 1-64 characters of [A-Za-z0-9._:-]")
    return text


def parse_sibling(text: str) -> tuple[str, HostPort]:
    """``ID@HOST:PORT``: a worker of the same master, known before it answers."""
    instance_id, sep, address = text.partition("@")
    if not sep:
        raise ValueError(f"expected ID@HOST:PORT, got {text!r}")
    return parse_instance_id(instance_id), parse_hostport(address)


def parse_raw(text: str) -> str:
    if text in ("sio", "off"):
        return text
    parse_hostport(text)
    return text


def parse_sio_path(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError(f"expected a path starting with '/', got {text!r}")
    return text if text.endswith("/") else text + "/"


def parse_admin_prefix(text: str) -> str:
    prefix = parse_sio_path(text).rstrip("/")
    if not prefix:
        raise ValueError("the admin pages need a prefix of their own, not '/'")
    return prefix


def parse_credentials(text: str) -> str:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("expected USER:PASSWORD")
    return text


def parse_wait(text: str) -> float:
    value = float(text.rstrip("s"))
    if value < 0:
        raise ValueError(f"expected seconds >= 0, got {text!r}")
    return value


def parse_redis_url(text: str) -> str:
    scheme = text.partition("://")[0].lower()
    if scheme not in ("redis", "rediss", "unix", "redis+sentinel"):
        raise ValueError(f"expected a redis:// URL, got {text!r}")
    return text


#: Let's Encrypt's ACME directories; ``--acme-directory staging`` names the second.
LETSENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


def parse_domains(text: str) -> tuple[str, ...]:
    """``name`` or ``name1,name2``: the DNS names of one certificate, lower-cased."""
    names = tuple(dict.fromkeys(part.strip().lower().rstrip(".") for part in text.split(",") if part.strip()))
    label = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
    for name in names:
        if not re.fullmatch(rf"(?:{label}\.)+{label}", name) or len(name) > 253:
            raise ValueError(f"expected a DNS name such as chat.example.com, got {name!r}")
    if not names:
        raise ValueError("expected a DNS name")
    return names


def parse_directory(text: str) -> str:
    if text == "staging":
        return LETSENCRYPT_STAGING
    if text in ("production", "letsencrypt"):
        return LETSENCRYPT_PRODUCTION
    if not text.startswith(("https://", "http://")):
        raise ValueError(f"expected an https:// directory URL or 'staging', got {text!r}")
    return text


def parse_retry(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(":")
    first, last = parse_duration(low), parse_duration(high) if sep else parse_duration(low)
    if last < first:
        raise ValueError(f"expected MIN:MAX seconds with MIN <= MAX, got {text!r}")
    return first, last


def random_instance_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4))


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monoport",
        description="One port for TLS, HTTP, WebSocket, Socket.IO, Flash policy and raw TCP.",
        argument_default=argparse.SUPPRESS,
    )
    for f in options():
        meta = f.metadata
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
        if meta["switch"]:
            kwargs["action"] = "store_true"
        else:
            kwargs["action"] = "append" if meta["repeat"] else "store"
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
        parser.add_argument(*meta["flags"], **kwargs)
    parser.add_argument("--check", "--check-config", dest="check", action="store_true",
                        help="build the whole configuration, print a summary and exit (0 good, 2 bad)")
    parser.add_argument("--version", action="version", version=_version())
    return parser


def _version() -> str:
    from . import __version__

    return f"monoport {__version__}"


def _convert(f: dataclasses.Field, raw: Any) -> Any:
    meta = f.metadata
    flag = meta["flags"][0]
    if meta["switch"]:
        if isinstance(raw, bool):
            return raw
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(flag, f"expected true or false, got {raw!r}")
    items = raw if isinstance(raw, list) else [raw]
    values = []
    for item in items:
        if meta["choices"] and item not in meta["choices"]:
            raise ConfigError(flag, f"expected one of {', '.join(meta['choices'])}, got {item!r}")
        try:
            values.append(meta["parse"](item))
        except ValueError as exc:
            raise ConfigError(flag, str(exc)) from None
    return tuple(values) if meta["repeat"] else values[0]


def from_sources(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> tuple[Config, argparse.Namespace]:
    """Build the Config from defaults < environment < command line.

    Raises:
        ConfigError: a value is wrong (argparse itself exits 2 on unknown flags).
    """
    environ = os.environ if environ is None else environ
    ns = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    for f in options():
        for name in env_names(f):
            if environ.get(name) not in (None, ""):
                raw: str | list[str] = environ[name]
                if f.metadata["repeat"]:
                    raw = [part for part in environ[name].replace(",", " ").split() if part]
                values[f.name] = _convert(f, raw)
                break
        if hasattr(ns, f.name):
            values[f.name] = _convert(f, getattr(ns, f.name))
    port = environ.get("PORT")
    if port and "bind" not in values:
        try:
            values["bind"] = (("0.0.0.0", parse_port(port)),)
        except ValueError:
            raise ConfigError("PORT", f"expected a port number, got {port!r}") from None
    notes: list[str] = []
    concurrency = environ.get("WEB_CONCURRENCY")
    if concurrency and "workers" not in values:
        if values.get("redis"):
            values["workers"] = _convert(_field("workers"), concurrency)
        else:
            notes.append(f"WEB_CONCURRENCY={concurrency} ignored without Redis (--redis or REDIS_URL): "
                         "running one worker, since broadcasts would miss clients of the others")
    ns.notes = notes
    if not values.get("instance_id"):
        values["instance_id"] = random_instance_id()
    config = Config(**values)
    validate(config, environ)
    return config, ns


def _field(name: str) -> dataclasses.Field:
    return next(f for f in options() if f.name == name)


def validate(config: Config, environ: Mapping[str, str]) -> None:
    """Cross-field checks that no single parser can make."""
    if not config.redis:
        # Without a shared message bus an emit reaches only this process's
        # clients: refusing is better than silently missing broadcasts.
        if config.peer:
            raise ConfigError("--peer", "peers need --redis (or REDIS_URL), or emits to rooms miss other instances' clients")
        if config.workers > 1:
            raise ConfigError("--workers", "more than one worker needs --redis (or REDIS_URL), "
                              "or emits to rooms miss other workers' clients")
    if len(config.cert) != len(config.key):
        raise ConfigError("--cert", "every --cert needs a --key at the same position")
    for path in config.cert + config.key:
        if not os.path.isfile(path):
            flag = "--cert" if path in config.cert else "--key"
            raise ConfigError(flag, f"no such file: {path}")
    if config.acme:
        if config.tls == "off":
            raise ConfigError("--acme", "needs TLS; drop --tls off")
        if config.acme_directory == LETSENCRYPT_PRODUCTION and not config.acme_agree_tos:
            raise ConfigError("--acme", "Let's Encrypt's production CA needs --acme-agree-tos "
                              "(its terms: https://letsencrypt.org/repository/)")
        if config.acme_ca_bundle and not os.path.isfile(config.acme_ca_bundle):
            raise ConfigError("--acme-ca-bundle", f"no such file: {config.acme_ca_bundle}")
    if config.flash_policy and not os.path.isfile(config.flash_policy):
        raise ConfigError("--flash-policy", f"no such file: {config.flash_policy}")


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
