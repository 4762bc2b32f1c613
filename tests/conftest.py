"""Fixtures: free ports, trustme certificates, and monoport run as a real process."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import trustme

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
#: how long a server gets to start listening
START_TIMEOUT = 20.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports: held open together while chosen (two free_port() calls in a row
    may get the same port back, and a server given it twice fails to bind its second listener)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """CA, a localhost certificate, and a second one for other.test (SNI)."""
    base = tmp_path_factory.mktemp("certs")
    files: dict[str, str] = {}
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    files["ca"] = str(base / "ca.pem")
    for name, hosts in (("localhost", ["localhost", "127.0.0.1", "::1"]), ("other", ["other.test", "*.other.test"])):
        cert = ca.issue_cert(*hosts)
        cert.cert_chain_pems[0].write_to_path(str(base / f"{name}.pem"))
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(str(base / f"{name}.pem"), append=True)
        cert.private_key_pem.write_to_path(str(base / f"{name}.key"))
        files[name] = str(base / f"{name}.pem")
        files[name + "_key"] = str(base / f"{name}.key")
    return files


@pytest.fixture(scope="session")
def client_ctx(tls_files: dict[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=tls_files["ca"])


class MonoportProcess:
    """``python -m monoport`` on a free port, its log captured to a file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None,
                 port: int | None = None, cwd: Path = ROOT) -> None:
        self.port = port or free_port()
        self.args = args
        self.log_path = log_path
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")])
        full_env.pop("PORT", None)
        full_env.update(env or {})
        self.env = full_env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> "MonoportProcess":
        self._log = open(self.log_path, "ab")
        cmd = [sys.executable, "-m", "monoport", "--bind", f"127.0.0.1:{self.port}", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"monoport exited with {self.proc.returncode}:\n{self.log()}")
            if "listening on" in self.log():
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"monoport did not start listening:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in log:\n{self.log()}")

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def monoport(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator:
    """Factory: ``monoport(args, env=...)`` starts a server; all are stopped after the test.

    After the test, no log may contain a Python traceback: a client's mistake
    must never produce one.
    """
    servers: list[MonoportProcess] = []

    def start(args: list[str] | None = None, env: dict[str, str] | None = None, wait: bool = True,
              port: int | None = None, allow_traceback: bool = False) -> MonoportProcess:
        log_path = tmp_path / f"monoport-{len(servers)}.log"
        server = MonoportProcess(list(args or []), log_path, env=env, port=port)
        server.allow_traceback = allow_traceback
        servers.append(server)
        return server.start(wait=wait)

    yield start
    for server in servers:
        server.stop()
    for server in servers:
        if not server.allow_traceback:
            assert "Traceback" not in server.log(), server.log()


@pytest.fixture
def inproc(tmp_path: Path) -> Iterator:
    """Factory: ``inproc(*flags, app=, sio=, certs=)`` builds monoport's Services in this process
    (tests/inproc.py), with a JSON access log in ``tmp_path``; each is closed after the test."""
    from tests.inproc import build

    made: list = []

    def make(*flags: str, **parts):
        parts.setdefault("access_path", tmp_path / f"access-{len(made)}.log")
        made.append(build(*flags, **parts))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture
def tls_args(tls_files: dict[str, str]) -> list[str]:
    return ["--cert", tls_files["localhost"], "--key", tls_files["localhost_key"]]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what=None):
    """Poll ``predicate`` until it returns a true value; bounded.

    ``what`` (a text, or a function giving one when the wait failed) says
    what was awaited, for the failure message.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    said = what() if callable(what) else what
    raise AssertionError(f"condition not met in {timeout:g}s" + (f": {said}" if said else ""))


@pytest.fixture
def node_clients() -> Iterator:
    """Factory: ``node_clients(url, ca, ...)`` starts an npm socket.io-client (tests/node_client.py); all end after."""
    from tests.node_client import NodeClient

    clients: list[NodeClient] = []

    def make(*args, **kwargs) -> NodeClient:
        clients.append(NodeClient(*args, **kwargs))
        return clients[-1]

    yield make
    for client in clients:
        client.close()
