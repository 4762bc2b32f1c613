"""Resource limits of one process: file descriptors and connections per client.

Theory of operation: a public port is attacked with numbers, not bytes.
- Descriptors: the soft ``RLIMIT_NOFILE`` is often 1024 while the hard
  limit is far higher; like HAProxy, monoport raises the soft limit to the
  hard one at start, so it runs out only where the administrator said so.
  When it does run out anyway, the listener backs off (see
  :mod:`monoport.listener`).
- Connections per client: ``--max-conns-per-ip`` counts the open
  connections of each *real* client address (the one a trusted PROXY
  header names, not the proxy's), from the moment that address is known to
  the moment the connection ends.
"""

from __future__ import annotations

import logging
import resource
from typing import Any

from .wire.trust import ip_of

log = logging.getLogger("monoport")


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # e.g. a hard limit of RLIM_INFINITY on macOS
            log.warning("file descriptor limit stays %s (could not raise it to %s: %s)", soft, hard, exc)
            return soft, hard
        log.info("file descriptor limit raised from %s to %s (the hard limit)", soft, hard)
        return hard, hard
    log.info("file descriptor limit: %s", soft)
    return soft, hard


def client_key(host: Any) -> str:
    """One key per client address: IPv4-mapped IPv6 counts as the IPv4 address."""
    addr = ip_of(str(host))
    return str(addr) if addr is not None else str(host).split("%")[0]


class PerClientLimit:
    """Open connections per client address, for ``--max-conns-per-ip``."""

    def __init__(self, limit: int) -> None:
        #: 0 means no limit (nothing is counted)
        self.limit = limit
        self.counts: dict[str, int] = {}

    def admit(self, conn: Any) -> bool:
        """Count ``conn`` for its client address; False when that address is over the limit.

        Counted connections are released by :meth:`release` whatever the answer.
        """
        if not self.limit or conn.ip_slot is not None:
            return True
        key = client_key(conn.client[0])
        conn.ip_slot = key
        count = self.counts.get(key, 0) + 1
        self.counts[key] = count
        return count <= self.limit

    def release(self, conn: Any) -> None:
        key = conn.ip_slot
        if key is None:
            return
        conn.ip_slot = None
        count = self.counts.get(key, 0) - 1
        if count > 0:
            self.counts[key] = count
        else:
            self.counts.pop(key, None)
