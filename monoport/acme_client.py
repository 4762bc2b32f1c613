"""Automatic HTTPS, the schedule: which certificate is due, when to try again, what others stored.

Theory of operation:

1. State lives under ``--certs-dir``/acme (see :class:`Store`): the account
   key, one directory per certificate (``cert.pem`` full chain, ``key.pem``),
   a small ``state.json`` (account URL per directory, which directory issued
   each certificate), the pending challenges (:mod:`monoport.acme_challenge`)
   and a lock file. Keys are written 0600. A restart finds the stored
   certificate and serves it without ordering again.
2. At start, a name with no stored certificate is served with a self-signed
   one made for it (never the development CA's) and one log line says so.
3. :meth:`Manager.run` is one background greenlet. For each certificate it
   works out when to act from the certificate's own dates (renew when a third
   of its lifetime remains; lifetimes shrink, so no fixed number of days),
   orders under an exclusive ``fcntl`` lock on the lock file (processes that
   share ``--certs-dir`` order once; the others wait, then find the new files;
   with ``--redis``, also under a Redis lock, and the certificate is shared
   there for instances on other hosts: :mod:`monoport.acme_redis`),
   and calls ``on_change`` so that the runtime swaps in a new
   :class:`~monoport.tls.Certificates` as SIGHUP does: handshakes already made
   keep their context, new ones get the new certificate, no connection drops.
4. A failed attempt (directory unreachable, challenge rejected, rate limit)
   is one log line; the next attempt waits ``--acme-retry`` MIN, doubling up
   to MAX; the current certificate is kept.

The talk with the CA (account, order, challenges, finalization) is
:mod:`monoport.acme_order`'s; this module decides when it happens.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Final

from cryptography import x509
from cryptography.x509.oid import NameOID

from .acme_challenge import write_private
from .acme_order import NETWORK_TIMEOUT, ORDER_TIMEOUT, OrderFlow, describe
from .acme_store import Store, stand_in

log = logging.getLogger("monoport")

#: Renew when this fraction of the certificate's lifetime remains.
RENEW_REMAINING: Final = 1 / 3
#: Longest sleep between two looks at the stored files: another process
#: sharing --certs-dir may have renewed; picking that up costs a stat().
CHECK_INTERVAL: Final = 5.0
#: While another process holds the lock (it is ordering), look again this often.
LOCK_POLL: Final = 1.0
#: Expiry of the Redis order lock: longer than any order, so only a holder that died leaves it to expire.
REDIS_LOCK_SECONDS: Final = 2 * ORDER_TIMEOUT + NETWORK_TIMEOUT


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def renewal_due(cert: x509.Certificate) -> dt.datetime:
    """When a third of the certificate's own lifetime remains."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return end - (end - start) * RENEW_REMAINING


def backoff(failures: int, low: float, high: float) -> float:
    """Seconds before attempt ``failures + 1``: ``low`` doubling per failure, at most ``high``."""
    return min(high, low * 2 ** max(0, failures - 1))


@dataclass
class Managed:
    """One certificate monoport keeps current: its names and how it is doing."""

    names: tuple[str, ...]
    #: the certificate being served (None: the self-signed stand-in)
    cert: x509.Certificate | None = None
    #: mtime of the stored cert.pem when it was loaded (another process may renew it)
    loaded_mtime: float | None = None
    failures: int = 0
    last_error: str | None = None
    #: monotonic time of the next attempt after a failure (0: no failure pending)
    retry_at: float = 0.0

    @property
    def primary(self) -> str:
        return self.names[0]


class Manager:
    """Orders and renews every ``--acme`` certificate of one process."""

    def __init__(self, config: Any, on_change: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, shared: Any = None) -> None:
        self.config = config
        #: a :class:`monoport.acme_redis.RedisShare` when instances on other hosts share the work, or None
        self.shared = shared
        self.store = Store(config.certs_dir, shared)
        self.challenges = self.store.challenges
        self.directory_url: str = config.acme_directory
        self.retry_min, self.retry_max = config.acme_retry
        self.on_change = on_change
        self.clock = clock
        self.certs = [Managed(names) for names in config.acme]
        self.orders = OrderFlow(config, self.store)
        for managed in self.certs:
            self._load_stored(managed)

    # -- what the TLS layer serves ---------------------------------------------------
    def pairs(self) -> list[tuple[str, str]]:
        """(cert file, key file) per certificate: the stored one, else a self-signed stand-in."""
        out = []
        for managed in self.certs:
            if managed.cert is not None:
                out.append((str(self.store.cert_path(managed.primary)), str(self.store.key_path(managed.primary))))
                continue
            cert_path, key_path = self.store.stand_in_paths(managed.primary)
            with self.store.stand_in_lock():
                if not (cert_path.is_file() and key_path.is_file()) or not self._covers(cert_path, managed.names):
                    cert_pem, key_pem = stand_in(managed.names)
                    write_private(key_path, key_pem)
                    write_private(cert_path, cert_pem)
            log.info("acme: serving a self-signed certificate for %s until the CA issues one",
                     ", ".join(managed.names))
            out.append((str(cert_path), str(key_path)))
        return out

    @staticmethod
    def _covers(path: Path, names: tuple[str, ...]) -> bool:
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            return False
        return set(san.get_values_for_type(x509.DNSName)) == set(names) and cert.not_valid_after_utc > _now()

    def _load_stored(self, managed: Managed) -> bool:
        """Take the stored certificate if it is new, from this directory, for these names. True if it changed."""
        path = self.store.cert_path(managed.primary)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return False
        if mtime == managed.loaded_mtime:
            return False
        issued_by = self.store.load_state().get("certs", {}).get(managed.primary, {}).get("directory")
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            return False
        if issued_by != self.directory_url or set(names.get_values_for_type(x509.DNSName)) != set(managed.names):
            return False
        if not self.store.key_path(managed.primary).is_file():
            return False
        managed.cert, managed.loaded_mtime = cert, mtime
        return True

    # -- the loop ----------------------------------------------------------------------
    def due_in(self, managed: Managed) -> float:
        """Seconds until ``managed`` needs an attempt (<= 0: now)."""
        if managed.retry_at:
            return managed.retry_at - self.clock()
        if managed.cert is None:
            return 0.0
        return (renewal_due(managed.cert) - _now()).total_seconds()

    def run(self, sleep: Callable[[float], Any] = time.sleep) -> None:
        """Keep every certificate current, forever (the runtime kills the greenlet)."""
        while True:
            try:
                self._round()
            except Exception:  # a bug here must not end renewals for the life of the process
                log.exception("acme: unexpected error; trying again in %.0fs", self.retry_min)
                sleep(self.retry_min)
                continue
            wait = min([CHECK_INTERVAL] + [max(0.0, self.due_in(m)) for m in self.certs])
            sleep(max(wait, 0.05))

    def _round(self) -> None:
        """Pick up files other processes wrote, then attempt what is due."""
        changed = False
        self.challenges.prune(older_than=2 * ORDER_TIMEOUT)
        for managed in self.certs:
            if self._pick_up(managed):
                changed = True
            if self.due_in(managed) <= 0:
                changed |= self.attempt(managed)
        if changed and self.on_change is not None:
            self.on_change()

    def attempt(self, managed: Managed) -> bool:
        """One order for ``managed`` under the lock; True when a new certificate was stored."""
        lock = self.store.lock()
        if not lock.acquire():
            managed.retry_at = self.clock() + LOCK_POLL  # another process is ordering: pick up its files
            return False
        token = None
        try:
            if self._pick_up(managed) and self.due_in(managed) > 0:
                return True  # another process just renewed it
            if self.shared is not None:
                token = self.shared.acquire(REDIS_LOCK_SECONDS)
                if token is None:  # an instance on another host is ordering (or Redis is away)
                    managed.retry_at = self.clock() + LOCK_POLL
                    return False
            what = "renewing" if managed.cert is not None else "ordering"
            log.info("acme: %s a certificate for %s from %s", what, ", ".join(managed.names), self.directory_url)
            try:
                self.orders.order(managed.primary, managed.names)
            except Exception as exc:  # the CA, the network or the challenge: one line, back off
                managed.failures += 1
                managed.last_error = describe(exc)
                delay = backoff(managed.failures, self.retry_min, self.retry_max)
                managed.retry_at = self.clock() + delay
                self.orders.reset()  # a fresh directory, nonce and account next time
                log.log(self._urgency(managed), "acme: %s %s failed (attempt %d): %s; next attempt in %.0fs, %s",
                        what, ", ".join(managed.names), managed.failures, managed.last_error, delay,
                        self._keeping(managed))
                return False
            managed.failures, managed.last_error, managed.retry_at = 0, None, 0.0
            self._load_stored(managed)
            if self.shared is not None:
                self._push(managed)
            log.info("acme: certificate for %s issued by %s, valid until %s", ", ".join(managed.names),
                     _issuer(managed.cert), managed.cert.not_valid_after_utc if managed.cert else "?")
            return True
        finally:
            if token is not None:
                self.shared.release(token)
            lock.release()

    def _pick_up(self, managed: Managed) -> bool:
        """Serve a certificate another process (or, through Redis, another host) stored; True if there was one."""
        if self.shared is not None:
            self._pull(managed)
        if not self._load_stored(managed):
            return False
        managed.retry_at, managed.failures, managed.last_error = 0.0, 0, None
        log.info("acme: picked up the certificate for %s from %s (valid until %s)",
                 ", ".join(managed.names), self.store.base, managed.cert.not_valid_after_utc if managed.cert else "?")
        return True

    # -- sharing through Redis ------------------------------------------------------------
    def _push(self, managed: Managed) -> None:
        """Offer the certificate just stored to the instances on other hosts."""
        self.shared.put_cert(managed.primary, {
            "cert": self.store.cert_path(managed.primary).read_text(),
            "key": self.store.key_path(managed.primary).read_text(),
            "directory": self.directory_url, "names": list(managed.names),
        })

    def _pull(self, managed: Managed) -> None:
        """Store a newer certificate another host put in Redis; :meth:`_load_stored` then serves it."""
        record = self.shared.get_cert(managed.primary)
        if not record or record.get("directory") != self.directory_url or record.get("names") != list(managed.names):
            return
        try:
            cert = x509.load_pem_x509_certificate(record["cert"].encode())
        except (KeyError, ValueError, AttributeError):
            return
        if managed.cert is not None and cert.not_valid_after_utc <= managed.cert.not_valid_after_utc:
            return
        self.store.save_cert(managed.primary, managed.names, self.directory_url, record["key"].encode(),
                             record["cert"].encode())

    @staticmethod
    def _urgency(managed: Managed) -> int:
        """ERROR once less than a sixth of the lifetime is left (half the renewal window spent), else WARNING."""
        cert = managed.cert
        if cert is None:
            return logging.WARNING
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        return logging.ERROR if cert.not_valid_after_utc - _now() < lifetime / 6 else logging.WARNING

    @staticmethod
    def _keeping(managed: Managed) -> str:
        if managed.cert is None:
            return "serving the self-signed one"
        left = (managed.cert.not_valid_after_utc - _now()).total_seconds()
        return f"keeping the current certificate (expires in {left:.0f}s)" if left > 0 else \
            "the current certificate HAS EXPIRED"

    # -- the protocol ------------------------------------------------------------------
    # -- visibility -----------------------------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        """Per certificate: names, issuer, not-after, seconds until renewal, failed attempts."""
        out = []
        for managed in self.certs:
            cert = managed.cert
            out.append({
                "names": list(managed.names),
                "issuer": _issuer(cert) if cert else "self-signed (waiting for the CA)",
                "not_after": cert.not_valid_after_utc.isoformat() if cert else None,
                "expires_in": round((cert.not_valid_after_utc - _now()).total_seconds(), 1) if cert else None,
                "renew_in": round(self.due_in(managed), 1),
                "failures": managed.failures,
                "last_error": managed.last_error,
            })
        return out


def _issuer(cert: x509.Certificate | None) -> str:
    if cert is None:
        return "-"
    names = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.issuer.rfc4514_string()
