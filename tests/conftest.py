"""Fixtures shared by the test files: free ports, trustme certificates, monoport run as a real process,
redis-server, Pebble, npm socket.io-client; and the helpers that wait (bounded) and stop what a test started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pytest
import trustme

if TYPE_CHECKING:
    from tests.cluster import RedisServer
    from tests.pebble import ChallTestSrv, Pebble

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
#: flags for a headless chromium as root in a container, with no background traffic
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
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


@pytest.fixture(autouse=True)
def _close_what_the_clients_opened() -> Iterator[None]:
    """After each test, the sessions and sockets that tests/clients.py's helpers opened are closed
    (once the servers are stopped: this fixture is set up first, so torn down last)."""
    yield
    from tests.clients import close_opened

    close_opened()


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
        cmd = [sys.executable, "-m", "monoport", "--bind", f"127.0.0.1:{self.port}", *self.args]
        with open(self.log_path, "ab") as log:  # the child has its own descriptor: ours can go at once
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self) -> None:
        def listening() -> bool:
            if "listening on" not in self.log():
                return False
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True

        assert self.proc is not None
        wait_started(self.proc, listening, START_TIMEOUT, "monoport", self.log)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """The log, once it contains ``text`` (bounded)."""
        def seen() -> str | None:
            log = self.log()
            return log if text in log else None

        return wait_for(seen, timeout, what=lambda: f"{text!r} not in log:\n{self.log()}")

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return stop_process(self.proc, sig, timeout)


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


def stop_process(proc: subprocess.Popen, sig: int | None = signal.SIGTERM, timeout: float = 20.0,
                 readers: tuple[threading.Thread, ...] = ()) -> int:
    """End ``proc`` and release everything the test held of it; its exit status.

    ``sig`` is sent if it still runs (None: closing its stdin tells it to end), SIGKILL follows
    after ``timeout``; the process is always reaped. ``readers``, the threads reading its pipes,
    are joined before the pipes are closed, so none reads a closed file. (Popen leaves its pipes
    open until garbage collection, which Python reports as a ResourceWarning in whichever later
    test runs then.)
    """
    if sig is None and proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:  # unflushed bytes to a process that is gone
            pass
    if proc.poll() is None:
        if sig is not None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for reader in readers:
        reader.join(timeout)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass
    return proc.returncode


def wait_started(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float, what: str,
                 log: Callable[[], str]) -> None:
    """Wait until ``ready()`` (an OSError from it means not yet); RuntimeError with ``log()`` if
    ``proc`` exits first or ``timeout`` passes."""
    def check() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log()}")
        try:
            return ready()
        except OSError:
            return False

    try:
        wait_for(check, timeout)
    except AssertionError:
        raise RuntimeError(f"{what} did not start:\n{log()}") from None


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


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A throw-away redis-server (tests/cluster.py), stopped after the test."""
    from tests.cluster import RedisServer

    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture(scope="session")
def challtestsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestSrv]:
    """pebble-challtestsrv as the DNS server for Pebble (tests/pebble.py), one for the session."""
    from tests.pebble import ChallTestSrv

    server = ChallTestSrv(tmp_path_factory.mktemp("challtestsrv")).start()
    yield server
    server.stop()


@pytest.fixture
def pebble(challtestsrv: ChallTestSrv, tmp_path: Path) -> Iterator:
    """Factory: ``pebble(tls_port=..., http_port=..., validity=None, start=True)``; all stopped after the test."""
    from tests.pebble import Pebble

    started: list[Pebble] = []

    def make(tls_port: int, http_port: int | None = None, validity: int | None = None, start: bool = True) -> Pebble:
        workdir = tmp_path / f"pebble-{len(started)}"
        workdir.mkdir()
        server = Pebble(workdir, challtestsrv.dns_port, tls_port, http_port or free_port(), validity)
        started.append(server)
        return server.start() if start else server

    yield make
    for server in started:
        server.stop()


def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.fail("chromium is not installed: run scripts/system-deps.sh (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Debian's chromium driven by Playwright (no browser is downloaded), one for the test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
