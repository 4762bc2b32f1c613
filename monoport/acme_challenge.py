"""ACME challenge answers: the TLS-ALPN-01 certificate and the pending-challenge registry.

Theory of operation:

1. The ordering code (:mod:`monoport.acme_order`) calls :meth:`Challenges.put_tls_alpn`
   / :meth:`Challenges.put_http` before it tells the CA to validate, and
   :meth:`Challenges.remove` once the authorization is settled.
2. The registry is a directory under ``--certs-dir`` (``acme/challenges``): one
   file per pending challenge, written atomically, keys 0600. Every process
   that shares ``--certs-dir`` (``--workers``, peers on one host) sees the
   same files, so the validator may reach any of them and still get the
   answer, whichever process placed the order.
3. The listener asks :meth:`Challenges.tls_alpn_pem` (a ClientHello offering
   exactly ``acme-tls/1``) or :meth:`Challenges.http_answer` (a GET of
   ``/.well-known/acme-challenge/TOKEN``). Names and tokens are checked
   against strict alphabets before they become file names: a client can
   never name a path.

The challenge certificate (RFC 8737 section 3): self-signed, one dNSName (the
name being validated), and the critical acmeIdentifier extension
1.3.6.1.5.5.7.1.31 whose value is the DER OCTET STRING of the SHA-256 of the
key authorization. No ssl, socket or gevent here: the TLS stage builds the
SSLContext from the PEM this module returns.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Final, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

#: RFC 8737's ALPN protocol name; a ClientHello offering exactly this is a validator.
ACME_TLS_ALPN: Final = "acme-tls/1"
#: id-pe-acmeIdentifier (RFC 8737 section 6.1).
ACME_IDENTIFIER_OID: Final = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
#: The HTTP-01 path prefix (RFC 8555 section 8.3).
HTTP_PREFIX: Final = "/.well-known/acme-challenge/"
#: A DNS name as it may appear in a file name: letters, digits, hyphens, dots.
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$")
#: An ACME token: base64url (RFC 8555 section 8.1), at least 128 bits of entropy.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
#: How long a challenge answer stays in Redis if its order never removes it, in seconds.
SHARED_TTL: Final = 600.0
#: How long a challenge certificate is valid; the validator only checks the extension.
CHALLENGE_VALIDITY: Final = dt.timedelta(days=7)


def _der_octet_string(payload: bytes) -> bytes:
    """DER OCTET STRING of a short payload (the 32-byte digest: short-form length)."""
    assert len(payload) < 128
    return bytes([0x04, len(payload)]) + payload


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """An unencrypted PKCS#8 PEM of ``key`` (written only through :func:`write_private`)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def self_signed(names: Sequence[str], validity: dt.timedelta, common_name: str | None = None,
                critical: Sequence[x509.ExtensionType] = ()) -> tuple[bytes, bytes]:
    """A self-signed EC P-256 certificate for ``names``: (certificate PEM, private key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or names[0])])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    )
    for extension in critical:
        builder = builder.add_extension(extension, critical=True)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


def challenge_certificate(name: str, key_authorization: str) -> tuple[bytes, bytes]:
    """The TLS-ALPN-01 answer for ``name``: (certificate PEM, private key PEM)."""
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    identifier = x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, _der_octet_string(digest))
    return self_signed([name], CHALLENGE_VALIDITY, "ACME challenge", critical=[identifier])


def valid_name(name: str | None) -> bool:
    if not name:
        return False
    return _NAME.match(name) is not None and ".." not in name


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Challenges:
    """Pending challenges, kept as files under ``directory`` (shared by processes)."""

    def __init__(self, directory: str | os.PathLike[str], shared: Any = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        #: a :class:`monoport.acme_redis.RedisShare` (instances on other hosts), or None
        self.shared = shared

    def _tls_path(self, name: str) -> Path:
        return self.directory / f"{name}.tls-alpn-01.pem"

    def _http_path(self, token: str) -> Path:
        return self.directory / f"{token}.http-01"

    # -- the ordering side ---------------------------------------------------------
    def put_tls_alpn(self, name: str, key_authorization: str) -> None:
        if not valid_name(name):
            raise ValueError(f"not a DNS name: {name!r}")
        cert_pem, key_pem = challenge_certificate(name, key_authorization)
        write_private(self._tls_path(name), cert_pem + key_pem)
        if self.shared is not None:
            self.shared.put_challenge("tls-alpn-01", name, cert_pem + key_pem, SHARED_TTL)

    def put_http(self, token: str, key_authorization: str) -> None:
        if not _TOKEN.match(token):
            raise ValueError(f"not an ACME token: {token!r}")
        write_private(self._http_path(token), key_authorization.encode("ascii"))
        if self.shared is not None:
            self.shared.put_challenge("http-01", token, key_authorization.encode("ascii"), SHARED_TTL)

    def remove(self, name: str | None = None, token: str | None = None) -> None:
        if name is not None and valid_name(name):
            self._tls_path(name).unlink(missing_ok=True)
            if self.shared is not None:
                self.shared.delete_challenge("tls-alpn-01", name)
        if token is not None and _TOKEN.match(token):
            self._http_path(token).unlink(missing_ok=True)
            if self.shared is not None:
                self.shared.delete_challenge("http-01", token)

    def prune(self, older_than: float, now: float | None = None) -> int:
        """Remove answers left by an order that never finished (a process killed mid-order).

        Only files older than ``older_than`` seconds go: another process
        sharing the directory may be in the middle of its own order.
        """
        now = time.time() if now is None else now
        removed = 0
        for path in self.directory.glob("*.*-01*"):
            try:
                if now - path.stat().st_mtime > older_than:
                    path.unlink()
                    removed += 1
            except OSError:
                pass
        return removed

    # -- the answering side --------------------------------------------------------
    def tls_alpn_path(self, name: str | None) -> Path | None:
        """The PEM file (certificate then key) answering a validator for ``name``, or None."""
        if not valid_name(name):
            return None
        path = self._tls_path(name)  # type: ignore[arg-type]
        if path.is_file():
            return path
        if self.shared is None:
            return None
        pem = self.shared.get_challenge("tls-alpn-01", name)
        if pem is None:
            return None
        # placed by an instance on another host; ssl loads certificates from files only
        copy = self.directory / f".shared-{name}.pem"
        write_private(copy, pem)
        return copy

    def http_answer(self, path: str) -> bytes | None:
        """The body for a GET of ``path`` when it names a pending HTTP-01 token, else None."""
        if not path.startswith(HTTP_PREFIX):
            return None
        token = path[len(HTTP_PREFIX):]
        if not _TOKEN.match(token):
            return None
        try:
            return self._http_path(token).read_bytes()
        except OSError:
            pass
        return self.shared.get_challenge("http-01", token) if self.shared is not None else None
