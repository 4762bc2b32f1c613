"""Parsers of single option values: what makes one flag's text valid, kept apart so the declaration reads as a table.

Each parser takes the text of a flag or environment variable and returns the
value, or raises ValueError saying what was expected; :mod:`monoport.config`
names one per option, :mod:`monoport.config_sources` turns the ValueError into
a ConfigError naming the flag and checks the options against each other.
"""

from __future__ import annotations

import ipaddress
import re
import string

HostPort = tuple[str, int]


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
