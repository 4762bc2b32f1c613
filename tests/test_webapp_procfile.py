"""The Procfile's `web` command, run as a Heroku-style platform runs it.

The command is read from the Procfile and started through ``bash -c`` (as
Heroku does; bash execs a lone command, so monoport gets the platform's
SIGTERM itself) with ``PORT`` set, ``FORWARDED_ALLOW_IPS`` naming the
router's address (127.0.0.1 here) and the virtualenv's ``python`` first on
PATH. The router's ``X-Forwarded-Proto: https`` must be believed from that
address only: a request from 127.0.0.2 carrying the same header stays http.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, START_TIMEOUT, free_port, stop_process, wait_started


def procfile_command(kind: str = "web") -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == kind:
            return command.strip()
    raise AssertionError(f"no {kind!r} process in the Procfile")


def get_info(port: int, source: str, headers: dict[str, str]) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/api/info", headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        conn.close()


@pytest.fixture
def procfile_web(tmp_path: Path):
    port = free_port("0.0.0.0")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONOPORT_")}
    env.update(PORT=str(port), FORWARDED_ALLOW_IPS="127.0.0.1",
               PATH=os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")]),
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", "-c", procfile_command()], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        wait_started(proc, lambda: "listening on" in log_path.read_text(), START_TIMEOUT, "the web process",
                     log_path.read_text)
        yield port, log_path
    finally:
        stop_process(proc, signal.SIGTERM, 20)  # what the platform sends on a restart or scale-down
    text = log_path.read_text()
    assert proc.returncode == 0, text
    assert "Traceback" not in text, text


def test_procfile_web_binds_port_on_all_interfaces_without_tls(procfile_web):
    port, log_path = procfile_web
    log = log_path.read_text()
    assert f"listening on 0.0.0.0:{port} (http)" in log
    assert "app webapp" in log and "tls=off" in log
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/")
    page = conn.getresponse()
    assert page.status == 200 and b"monoport chat" in page.read()  # served, not redirected to https
    conn.close()


def test_forwarded_proto_is_believed_from_the_trusted_router_only(procfile_web):
    port, _ = procfile_web
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    trusted = get_info(port, "127.0.0.1", forwarded)
    assert trusted["scheme"] == "https" and trusted["tls_by"] == "proxy"
    assert trusted["remote_addr"] == "203.0.113.9"
    untrusted = get_info(port, "127.0.0.2", forwarded)
    assert untrusted["scheme"] == "http" and untrusted["tls_by"] is None
    assert untrusted["remote_addr"] == "127.0.0.2"
    plain = get_info(port, "127.0.0.1", {})
    assert plain["scheme"] == "http"


def test_socketio_accepts_the_https_page_only_through_the_trusted_router(procfile_web):
    """Why the router must be trusted: the browser's Origin is https, the hop to the dyno is http."""
    port, _ = procfile_web
    headers = {"Host": "chat.example.com", "Origin": "https://chat.example.com", "X-Forwarded-Proto": "https"}

    def handshake(source: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
        try:
            conn.request("GET", "/socket.io/?EIO=4&transport=polling", headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    assert handshake("127.0.0.1") == 200
    assert handshake("127.0.0.2") == 400  # not an accepted origin: the scheme it sees is http
