"""The admin pages under ``--admin-prefix`` (default ``/monoport``).

- ``health``: JSON ``{"id", "cluster", "conns", "max_conns", "draining",
  "ready", "version"}``, open to everyone: peers and load balancers poll it;
  503 while starting (not ready) or draining.
- ``stats`` (HTML), ``stats.json`` and ``metrics`` (Prometheus text): views
  of :meth:`Stats.snapshot`, behind the access rule below.

Access rule (DESIGN.md, "Admin pages"): without ``--stats-auth`` only
loopback clients see them, everyone else gets 404 (nothing to find here);
with it, HTTP Basic with those credentials is required from everyone,
loopback included (401 otherwise). "Loopback" is judged on ``REMOTE_ADDR``,
which is the real client after trusted PROXY/X-Forwarded-For handling, so a
proxy on the same machine does not make the world local.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any, Callable, Iterable

from ..wire.responses import reason_phrase
from ..wire.trust import is_loopback
from . import metrics, statspage

Wsgi = Callable[[dict, Callable], Iterable[bytes]]


def credentials_match(header: str | None, expected: str) -> bool:
    """Check an ``Authorization: Basic`` header against ``user:password`` in constant time."""
    if not header:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, expected.encode("utf-8"))


class Admin:
    """WSGI app for ``<prefix>/...``; ``pages`` maps a name to a view of the snapshot."""

    def __init__(self, stats: Any, prefix: str = "/monoport", auth: str | None = None) -> None:
        self.stats = stats
        self.prefix = prefix.rstrip("/")
        self.auth = auth
        #: name -> (content type, render(snapshot, environ) -> bytes): views of one snapshot
        self.pages: dict[str, tuple[str, Callable[[dict, dict], bytes]]] = {
            "stats": ("text/html; charset=utf-8", statspage.render),
            "stats.json": ("application/json", lambda snap, env: json.dumps(snap, indent=1).encode()),
            "metrics": (metrics.CONTENT_TYPE, metrics.render),
        }

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        name = environ.get("PATH_INFO", "")[len(self.prefix) + 1:]
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return self._reply(start_response, 405, b"GET only\n", [("Allow", "GET, HEAD")])
        if name == "health":
            # 503 while starting or draining: load balancers (and Kubernetes
            # readiness probes) send nothing yet, or no more; the body says why.
            health = self.stats.health()
            body = json.dumps(health).encode()
            unready = health["draining"] or not health["ready"]
            return self._reply(start_response, 503 if unready else 200, body,
                               [("Content-Type", "application/json")])
        denied = self._denied(environ, start_response)
        if denied is not None:
            return denied
        page = self.pages.get(name)
        if page is None:
            return self._reply(start_response, 404, b"Not Found\n")
        content_type, render = page
        body = render(self.stats.snapshot(), environ)
        return self._reply(start_response, 200, body, [("Content-Type", content_type)])

    def _denied(self, environ: dict, start_response: Callable) -> Iterable[bytes] | None:
        if self.auth is None:
            if is_loopback(environ.get("REMOTE_ADDR")):
                return None
            return self._reply(start_response, 404, b"Not Found\n")
        if credentials_match(environ.get("HTTP_AUTHORIZATION"), self.auth):
            return None
        return self._reply(start_response, 401, b"Authentication required\n",
                           [("WWW-Authenticate", 'Basic realm="monoport", charset="UTF-8"')])

    @staticmethod
    def _reply(start_response: Callable, status: int, body: bytes,
               headers: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
        headers = list(headers or [("Content-Type", "text/plain; charset=utf-8")])
        headers += [("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
        start_response(f"{status} {reason_phrase(status)}", headers)
        return [body]
