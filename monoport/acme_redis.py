"""Automatic HTTPS across hosts: the order lock, pending challenges and issued certificates in Redis.

Theory of operation: instances on different hosts (peers sharing ``--redis``)
do not share a ``--certs-dir``, yet the CA's validator may reach any of them,
and TLS-ALPN-01 allows one answer per name at a time, so they must order
once. With Redis given:

1. The process about to order takes the lock ``<prefix>acme:lock`` (SET NX
   with an expiry longer than an order, released only by its holder), on top
   of the ``--certs-dir`` file lock its local workers share.
2. Every challenge answer it places is also written to
   ``<prefix>acme:challenge:<type>:<name or token>`` (with an expiry), so
   whichever instance the validator reaches can answer it.
3. The issued certificate and key go to ``<prefix>acme:cert:<name>``; every
   instance looks there each round and stores a newer one in its own
   ``--certs-dir``, from where the usual pick-up serves it.

``prefix`` is passed in (scoping keys per cluster). A Redis error is one log
line and counts as "not available": the lock is not taken (no order this
round), a challenge is not found, no certificate is pulled.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any, Final

import redis

log = logging.getLogger("monoport")

#: Seconds a Redis command may take before it counts as unavailable.
REDIS_TIMEOUT: Final = 5.0
#: Compare-and-delete: only the holder's token releases the lock.
_RELEASE: Final = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class RedisShare:
    """The ACME state several hosts share through one Redis."""

    def __init__(self, url: str, prefix: str = "monoport:") -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
        self.prefix = prefix + "acme:"
        self._failing = False

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except redis.RedisError as exc:
            if not self._failing:  # one line per outage, not one per call
                log.warning("acme: redis unavailable (%s: %s); ACME state is not shared until it is back", what, exc)
            self._failing = True
            return None
        if self._failing:
            log.info("acme: redis reachable again")
            self._failing = False
        return result

    # -- the order lock -------------------------------------------------------------------
    def acquire(self, seconds: float) -> str | None:
        """Take the cluster-wide order lock for at most ``seconds``; its token, or None when held or unreachable."""
        token = secrets.token_hex(16)
        taken = self._call("lock", self.redis.set, self.prefix + "lock", token, nx=True, px=int(seconds * 1000))
        return token if taken else None

    def release(self, token: str) -> None:
        self._call("unlock", self.redis.eval, _RELEASE, 1, self.prefix + "lock", token)

    # -- pending challenges ---------------------------------------------------------------
    def put_challenge(self, kind: str, key: str, value: bytes, seconds: float) -> None:
        self._call("put challenge", self.redis.set, f"{self.prefix}challenge:{kind}:{key}", value,
                   px=int(seconds * 1000))

    def get_challenge(self, kind: str, key: str) -> bytes | None:
        return self._call("get challenge", self.redis.get, f"{self.prefix}challenge:{kind}:{key}")

    def delete_challenge(self, kind: str, key: str) -> None:
        self._call("delete challenge", self.redis.delete, f"{self.prefix}challenge:{kind}:{key}")

    # -- issued certificates --------------------------------------------------------------
    def put_cert(self, primary: str, record: dict[str, Any]) -> None:
        """``record``: cert (full chain PEM), key (PEM), directory, names."""
        self._call("put certificate", self.redis.set, f"{self.prefix}cert:{primary}", json.dumps(record))

    def get_cert(self, primary: str) -> dict[str, Any] | None:
        raw = self._call("get certificate", self.redis.get, f"{self.prefix}cert:{primary}")
        if raw is None:
            return None
        try:
            record = json.loads(raw)
        except ValueError:
            return None
        return record if isinstance(record, dict) else None
