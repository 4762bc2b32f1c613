"""The Flash cross-domain policy answer (a request that is not HTTP at all)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .wire.sniff import FLASH_REQUEST

REQUEST = FLASH_REQUEST


def default_policy(ports: Iterable[int]) -> bytes:
    """A policy that lets Flash sockets from any domain reach monoport's own ports."""
    to_ports = ",".join(str(p) for p in sorted(set(ports))) or "*"
    return (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE cross-domain-policy SYSTEM "http://www.adobe.com/xml/dtds/cross-domain-policy.dtd">\n'
        "<cross-domain-policy>\n"
        '  <site-control permitted-cross-domain-policies="master-only"/>\n'
        f'  <allow-access-from domain="*" to-ports="{to_ports}"/>\n'
        "</cross-domain-policy>\n"
    ).encode("utf-8")


def load_policy(path: str | None, ports: Iterable[int]) -> bytes:
    """The bytes to send (NUL-terminated): the file's content, or the default policy."""
    body = Path(path).read_bytes() if path else default_policy(ports)
    return body.rstrip(b"\x00") + b"\x00"
