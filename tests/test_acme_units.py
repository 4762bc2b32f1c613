"""Pure pieces of ACME: when to renew, how long to back off, the shared lock, the flags, the loop."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from monoport.acme_challenge import Challenges
from monoport.acme_client import Manager, backoff, renewal_due
from monoport.acme_redis import RedisShare
from monoport.acme_store import FileLock, stand_in
from monoport.config_sources import from_sources
from monoport.config_values import LETSENCRYPT_STAGING
from monoport.errors import ConfigError
from tests.conftest import free_port


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
    cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.test", "www.a.test"]
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    [managed] = m.certs
    assert not m.attempt(managed)  # nothing listens on port 9: one failure, back-off
    [shown] = m.snapshot()
    assert shown["names"] == ["a.test", "www.a.test"] and shown["failures"] == 1
    assert shown["issuer"].startswith("self-signed") and shown["not_after"] is None
    assert 0 <= shown["renew_in"] <= 0.1  # the back-off (--acme-retry MIN), not a renewal date


def test_acme_flags_parse_names_directories_and_retry_bounds():
    config, _ = from_sources(["--acme", "Chat.Example.com", "--acme", "a.test,www.a.test", "--acme-directory",
                              "staging", "--acme-retry", "5:300", "--hsts", "600"], {})
    assert config.acme == (("chat.example.com",), ("a.test", "www.a.test"))
    assert config.acme_directory == LETSENCRYPT_STAGING
    assert config.acme_retry == (5.0, 300.0) and config.hsts == 600
    assert from_sources([], {})[0].acme_retry == (60.0, 21600.0)  # 1 minute to 6 hours
    assert from_sources([], {})[0].hsts is None


@pytest.mark.parametrize("argv,flag", [
    (["--acme", "not a name"], "--acme"),
    (["--acme", "localhost", "--acme-directory", "staging"], "--acme"),  # a CA issues only for public-looking names
    (["--acme", "a.test", "--acme-directory", "ftp://x"], "--acme-directory"),
    (["--acme", "a.test", "--acme-directory", "staging", "--acme-retry", "60:10"], "--acme-retry"),
    (["--acme", "a.test", "--acme-directory", "staging", "--tls", "off"], "--acme"),
    (["--acme", "a.test"], "--acme"),  # production without --acme-agree-tos
])
def test_bad_acme_flags_are_refused_naming_the_flag(argv, flag):
    with pytest.raises(ConfigError) as caught:
        from_sources(argv, {})
    assert caught.value.flag == flag


def test_a_failing_renewal_turns_from_warning_to_error_when_a_sixth_of_the_lifetime_is_left(tmp_path):
    now = dt.datetime.now(dt.timezone.utc)
    m = manager(tmp_path)
    [managed] = m.certs
    managed.cert = cert_valid_for(["a.test"], now - dt.timedelta(days=60), now + dt.timedelta(days=30))
    assert m._urgency(managed) == logging.WARNING  # renewal window open, plenty left
    managed.cert = cert_valid_for(["a.test"], now - dt.timedelta(days=80), now + dt.timedelta(days=10))
    assert m._urgency(managed) == logging.ERROR
    assert "expires in" in m._keeping(managed)


def test_challenge_answers_left_by_an_unfinished_order_are_pruned_fresh_ones_kept(tmp_path):
    challenges = Challenges(tmp_path)
    challenges.put_tls_alpn("old.test", "token.thumbprint")
    challenges.put_http("T" * 43, "T" * 43 + ".thumbprint")
    challenges.put_tls_alpn("new.test", "token.thumbprint")
    long_ago = time.time() - 3600
    for path in (challenges.tls_alpn_path("old.test"), tmp_path / f"{'T' * 43}.http-01"):
        os.utime(path, (long_ago, long_ago))
    assert challenges.prune(older_than=180) == 2
    assert challenges.tls_alpn_path("old.test") is None
    assert challenges.http_answer("/.well-known/acme-challenge/" + "T" * 43) is None
    assert challenges.tls_alpn_path("new.test") is not None


def test_a_challenge_placed_on_one_host_is_answered_on_another_through_redis(tmp_path, redis_url):
    here = Challenges(tmp_path / "here", RedisShare(redis_url, prefix="t1:"))
    there = Challenges(tmp_path / "there", RedisShare(redis_url, prefix="t1:"))
    elsewhere = Challenges(tmp_path / "elsewhere", RedisShare(redis_url, prefix="t2:"))  # another cluster
    here.put_tls_alpn("a.test", "token.thumbprint")
    here.put_http("T" * 43, "T" * 43 + ".thumbprint")
    copy = there.tls_alpn_path("a.test")
    assert copy is not None and copy.read_bytes() == here.tls_alpn_path("a.test").read_bytes()
    assert there.http_answer("/.well-known/acme-challenge/" + "T" * 43) == ("T" * 43 + ".thumbprint").encode()
    assert elsewhere.tls_alpn_path("a.test") is None
    here.remove(name="a.test", token="T" * 43)
    assert there.tls_alpn_path("a.test") is None
    assert there.http_answer("/.well-known/acme-challenge/" + "T" * 43) is None


def test_the_redis_order_lock_has_one_holder_and_only_it_releases(redis_url):
    first, second = RedisShare(redis_url, prefix="t3:"), RedisShare(redis_url, prefix="t3:")
    token = first.acquire(30)
    assert token and second.acquire(30) is None
    second.release("not-the-token")
    assert second.acquire(30) is None
    first.release(token)
    assert second.acquire(30)


def test_redis_away_is_one_line_and_nothing_shared(tmp_path, caplog):
    share = RedisShare(f"redis://127.0.0.1:{free_port()}/0", prefix="t4:")
    assert share.acquire(30) is None
    assert share.get_challenge("http-01", "x") is None
    assert share.get_cert("a.test") is None
    assert caplog.text.count("acme: redis unavailable") == 1


def test_a_certificate_another_process_stored_during_a_back_off_is_served_not_ordered_again(tmp_path):
    m = manager(tmp_path)
    [managed] = m.certs
    managed.failures, managed.retry_at = 1, m.clock() - 1  # a failed attempt; its back-off is over
    cert_pem, key = stand_in(managed.names)  # what the other process stored (valid for days)
    m.store.save_cert(managed.primary, managed.names, m.directory_url, key, cert_pem)
    assert m.attempt(managed)  # picked up: nothing ordered (the directory is unreachable: ordering would fail)
    assert managed.failures == 0 and managed.cert is not None and m.due_in(managed) > 3600
