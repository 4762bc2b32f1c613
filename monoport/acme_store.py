"""Where automatic HTTPS keeps its files: ``<certs-dir>/acme``, shared by every process using it.

Layout (keys 0600, every file written atomically)::

    account.key                 the ACME account's EC P-256 key
    state.json                  account URL per directory; which directory issued each certificate
    certs/<name>/cert.pem       the full chain served for <name> (the first --acme name of a certificate)
    certs/<name>/key.pem        its key
    self-signed/<name>.pem|key  the stand-in served until the CA issues one
    challenges/                 pending challenge answers (monoport.acme_challenge)
    lock                        flock'd by the process that is ordering

No ssl, socket or gevent here: files and cryptography only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from pathlib import Path
from typing import Any, Final, Iterator

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .acme_challenge import Challenges, key_pem, self_signed, write_private

#: Validity of the self-signed stand-in served until the first certificate arrives.
STAND_IN_VALIDITY: Final = dt.timedelta(days=7)


def stand_in(names: tuple[str, ...]) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``names``: (cert PEM, key PEM)."""
    return self_signed(names, STAND_IN_VALIDITY)


class Store:
    """The files under ``<certs-dir>/acme``."""

    def __init__(self, certs_dir: str | os.PathLike[str], shared: Any = None) -> None:
        self.base = Path(certs_dir) / "acme"
        self.base.mkdir(parents=True, exist_ok=True)
        self.challenges = Challenges(self.base / "challenges", shared)
        self.lock_path = self.base / "lock"
        self.state_path = self.base / "state.json"

    def cert_path(self, primary: str) -> Path:
        return self.base / "certs" / primary / "cert.pem"

    def key_path(self, primary: str) -> Path:
        return self.base / "certs" / primary / "key.pem"

    def stand_in_paths(self, primary: str) -> tuple[Path, Path]:
        return self.base / "self-signed" / f"{primary}.pem", self.base / "self-signed" / f"{primary}.key"

    @contextlib.contextmanager
    def stand_in_lock(self) -> Iterator[None]:
        """Held while a stand-in is looked at and written: workers starting together on one --certs-dir
        would otherwise each write a key and a certificate, and one could load another's certificate
        with its own key. Blocking, but only at start and for the time of one key generation."""
        path = self.base / "self-signed" / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def load_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text())
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def save_state(self, state: dict[str, Any]) -> None:
        write_private(self.state_path, json.dumps(state, indent=1, sort_keys=True).encode())

    def save_cert(self, primary: str, names: tuple[str, ...], directory: str, key: bytes, chain: bytes) -> None:
        """Store an issued certificate: the key first, then the chain (its mtime is what others watch)."""
        write_private(self.key_path(primary), key)
        write_private(self.cert_path(primary), chain)
        state = self.load_state()
        state.setdefault("certs", {})[primary] = {
            "names": list(names), "directory": directory,
            "stored_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        self.save_state(state)

    def account_key(self) -> ec.EllipticCurvePrivateKey:
        path = self.base / "account.key"
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if isinstance(key, ec.EllipticCurvePrivateKey):
                return key
        except (OSError, ValueError):
            pass
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(path, key_pem(key))
        return key

    def lock(self) -> "FileLock":
        return FileLock(self.lock_path)


class FileLock:
    """An exclusive ``flock`` on one file, shared by every process of one --certs-dir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if free; False when another process holds it (never blocks the hub)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
