"""Helpers for the scale-out tests: a real redis-server, several monoport instances, peer-listener clients.

The fixtures built on them (``redis_server``, ``redis_url``) are in tests/conftest.py."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

from monoport.wire import proxyproto
from tests.clients import closed_after_the_test, read_to_eof
from tests.conftest import free_port, stop_process, wait_for

APP = ["--app", "tests.apps.echo_app:app"]


class RedisServer:
    """A throw-away redis-server on a free port (scripts/system-deps.sh installs it)."""

    def __init__(self, workdir: Path, persist: bool = False) -> None:
        self.binary = shutil.which("redis-server")
        #: keep the data across a restart (append-only file, fsync'd at every write)
        self.persist = persist
        assert self.binary, "redis-server is missing: run scripts/system-deps.sh"
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        durable = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      *durable, "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(self._pong, 10)
        except AssertionError:
            self.stop()
            raise RuntimeError("redis-server did not start") from None
        return self

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)


def peers_up(server, count: int, timeout: float = 20.0) -> None:
    """Wait until ``server`` logged ``count`` peers as up (bounded)."""
    wait_for(lambda: server.log().count(" up (conns ") >= count, timeout, interval=0.1,
             what=lambda: f"peers not up:\n{server.log()}")


def start_cluster(monoport, redis: str, ids: list[str], extra: list[str]) -> list:
    """One instance per id, all on loopback, discovering each other through Redis."""
    servers = []
    for instance_id in ids:
        peer_port = free_port()
        server = monoport(APP + ["--redis", redis, "--instance-id", instance_id,
                                 "--peer-bind", f"127.0.0.1:{peer_port}"] + extra)
        server.peer_port = peer_port
        server.instance_id = instance_id
        servers.append(server)
    for server in servers:
        peers_up(server, len(ids) - 1)
    return servers


def https_get(port: int, path: str, ctx: ssl.SSLContext, headers: dict | None = None,
              timeout: float = 10.0) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def held_connection(port: int, ctx: ssl.SSLContext) -> http.client.HTTPSConnection:
    """A keep-alive connection that has been served once (so it is counted) and stays open (until the test ends)."""
    conn = closed_after_the_test(http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10))
    conn.request("GET", "/environ")
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.served_by = body["monoport.instance_id"]
    return conn


def peer_health(peer_port: int, timeout: float = 5.0) -> dict:
    """GET /monoport/health on a peer listener, PROXY v2 LOCAL first (as the poller does)."""
    with socket.create_connection(("127.0.0.1", peer_port), timeout=timeout) as sock:
        sock.sendall(proxyproto.build_v2_local()
                     + b"GET /monoport/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_to_eof(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    health = json.loads(body)
    # 200, or 503 from a draining instance (load balancers take it out)
    assert head.startswith(b"HTTP/1.1 503" if health.get("draining") else b"HTTP/1.1 200"), data
    return health
