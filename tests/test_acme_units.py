"""Pure pieces of the ACME manager: when to renew, how long to back off, the shared lock."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from monoport.acme_client import FileLock, backoff, renewal_due, stand_in


def cert_valid_for(names, start: dt.datetime, end: dt.datetime) -> x509.Certificate:
    cert = x509.load_pem_x509_certificate(stand_in(tuple(names))[0])
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
               .public_key(cert.public_key()).serial_number(1).not_valid_before(start).not_valid_after(end))
    return builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())


def test_renewal_is_due_when_a_third_of_the_lifetime_remains():
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for days in (90, 45, 6):  # Let's Encrypt's lifetimes are shrinking: the dates decide, not a fixed count
        cert = cert_valid_for(["a.test"], start, start + dt.timedelta(days=days))
        assert renewal_due(cert) == start + dt.timedelta(days=days) * 2 / 3


def test_backoff_doubles_from_the_minimum_to_the_maximum():
    assert [backoff(n, 60, 21600) for n in range(1, 11)] == [60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600]
    assert backoff(50, 60, 21600) == 21600
    assert backoff(3, 0.5, 1.5) == 1.5


def test_the_lock_is_exclusive_between_holders(tmp_path):
    first, second = FileLock(tmp_path / "lock"), FileLock(tmp_path / "lock")
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()
