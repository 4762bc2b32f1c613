"""Pure pieces of the ACME manager: when to renew, how long to back off, the shared lock."""

from __future__ import annotations

import datetime as dt
import os
from types import SimpleNamespace

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from monoport.acme_client import FileLock, Manager, backoff, renewal_due, stand_in


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


def manager(tmp_path) -> Manager:
    config = SimpleNamespace(certs_dir=str(tmp_path), acme=(("a.test", "www.a.test"),), acme_email=None,
                             acme_directory="http://127.0.0.1:9/directory", acme_ca_bundle=None,
                             acme_retry=(0.01, 0.04), acme_challenge=("tls-alpn-01", "http-01"))
    return Manager(config)


class _Stop(BaseException):
    pass


def test_a_bug_in_one_round_is_logged_and_the_loop_goes_on(tmp_path, caplog):
    m = manager(tmp_path)
    calls = []

    def round_() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("a bug")
        raise _Stop()

    m._round = round_
    with pytest.raises(_Stop):
        m.run(sleep=lambda seconds: None)
    assert len(calls) == 2
    assert "acme: unexpected error" in caplog.text


def test_snapshot_before_the_first_certificate_shows_the_stand_in_and_failures(tmp_path):
    m = manager(tmp_path)
    [(cert_file, key_file)] = m.pairs()
    cert = x509.load_pem_x509_certificate(open(cert_file, "rb").read())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.test", "www.a.test"]
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    [managed] = m.certs
    assert not m.attempt(managed)  # nothing listens on port 9: one failure, back-off
    [shown] = m.snapshot()
    assert shown["names"] == ["a.test", "www.a.test"] and shown["failures"] == 1
    assert shown["issuer"].startswith("self-signed") and shown["not_after"] is None
    assert 0 <= shown["renew_in"] <= 0.1  # the back-off (--acme-retry MIN), not a renewal date
