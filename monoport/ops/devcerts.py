"""A local CA and a localhost certificate for development, made once and reused.

Made with ``cryptography``: a CA (10 years) whose certificate the user can
trust in a browser, and a leaf for localhost, 127.0.0.1 and ::1 signed by it
(about 13 months, within what browsers accept). Keys are written 0600 and are
never committed (certs/.gitignore).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger("monoport")

CA_CERT = "monoport-dev-ca.pem"
CA_KEY = "monoport-dev-ca.key"
LEAF_CERT = "localhost.pem"
LEAF_KEY = "localhost.key"
#: Renew the leaf this long before it expires.
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class DevCerts:
    ca: Path
    cert: Path
    key: Path


def ensure(directory: str | os.PathLike[str]) -> DevCerts:
    """Return the dev CA and localhost pair in ``directory``, creating them if needed."""
    base = Path(directory)
    base.mkdir(parents=True, exist_ok=True)
    paths = DevCerts(ca=base / CA_CERT, cert=base / LEAF_CERT, key=base / LEAF_KEY)
    if not (paths.ca.exists() and (base / CA_KEY).exists()):
        log.info("creating a development CA in %s (trust %s to avoid browser warnings)", base, paths.ca)
        _write_ca(base)
        _remove(paths.cert, paths.key)
    if not (paths.cert.exists() and paths.key.exists()) or _expiring(paths.cert):
        log.info("creating a localhost certificate signed by the development CA")
        _write_leaf(base)
    return paths


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _expiring(path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.not_valid_after_utc - RENEW_BEFORE < dt.datetime.now(dt.timezone.utc)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_ca(base: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "monoport development CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(base / CA_KEY, key)
    (base / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_leaf(base: Path) -> None:
    ca_key = serialization.load_pem_private_key((base / CA_KEY).read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((base / CA_CERT).read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=397))
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    _write_key(base / LEAF_KEY, key)
    (base / LEAF_CERT).write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
