"""The state of one client connection as it moves through the stages."""

from __future__ import annotations

import logging
import time
from typing import Any

from .stream import Stream

log = logging.getLogger("monoport")

Address = tuple[str, int]


def format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address) or "-"


class Connection:
    """One accepted socket: who it really is, what it speaks, how it ended."""

    def __init__(self, sock: Any, peer: Address, local: Address, listener: Any) -> None:
        self.raw_sock = sock
        #: the socket stages talk to: ``raw_sock``, or the TLS socket over it
        self.sock = sock
        self.stream = Stream(sock)
        #: the address of the TCP peer (a proxy, when PROXY protocol is used)
        self.peer = peer
        #: the real client: ``peer``, or what a trusted PROXY header says
        self.client = peer
        self.local = local
        self.listener = listener
        self.started = time.monotonic()
        self.kind = "unknown"
        #: the ``monoport.tls`` environ value, or None
        self.tls: dict[str, Any] | None = None
        #: True once the bytes on ``sock`` are decrypted TLS (nothing to peek)
        self.tls_terminated = False
        #: a trusted PROXY v2 header said the client used TLS in front of us
        self.proxied_tls = False
        #: the id of the instance that forwarded this connection, or None
        self.forwarded_by: str | None = None
        self.outcome = "closed"
        self.requests = 0

    @property
    def secure(self) -> bool:
        return self.tls is not None or self.proxied_tls

    def adopt_tls(self, tls_sock: Any, info: dict[str, Any]) -> None:
        """Continue on the decrypted stream; nothing on it can be peeked."""
        self.sock = tls_sock
        self.stream = Stream(tls_sock)
        self.tls = info
        self.tls_terminated = True

    def describe(self) -> str:
        parts = [format_address(self.client), self.kind]
        if self.tls:
            parts.append(f"{self.tls['version']}")
            if self.tls.get("sni"):
                parts.append(f"sni={self.tls['sni']}")
        if self.client != self.peer:
            parts.append(f"via={format_address(self.peer)}")
        return " ".join(parts)

    def finish(self, outcome: str | None = None, level: int = logging.INFO) -> None:
        if outcome is not None:
            self.outcome = outcome
        duration = time.monotonic() - self.started
        extra = f" requests={self.requests}" if self.requests else ""
        log.log(level, "conn %s%s %.3fs %s", self.describe(), extra, duration, self.outcome)

    def close(self) -> None:
        for sock in (self.sock, self.raw_sock):
            try:
                sock.close()
            except OSError:
                pass
