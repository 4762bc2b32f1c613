"""A rolling restart of two peers sharing one port, under load, fails no request.

Two instances bind the same TLS port with ``--reuse-port`` (the kernel
spreads connections between them), find each other through a real Redis,
and serve a load generator: HTTP clients that open a new connection every
few requests, and Socket.IO clients (python-socketio's and the npm
socket.io-client in Node.js; WebSocket and long-polling) that join a room on
every connect. Then instance a1 gets SIGTERM and is started again
as a2, then b1 the same way as b2. The HTTP clients are strict: no liveness
check and no retry, so every closed connection that a request was sent on
counts as a failure.

The kernel part of "nothing lost": when a listener of a reuse-port group
closes, Linux resets the connections still in its accept queue unless
``net.ipv4.tcp_migrate_req`` is 1. That sysctl belongs to the network
namespace, so the test runs itself in a private one (``unshare``) where it
can set it without touching the machine; the README tells operators to set
it. monoport's part: take what is queued before closing, answer idle
keep-alive clients' next request with ``Connection: close`` instead of
cutting them, refuse new Socket.IO sessions while stopping, and end
sessions as a lost transport so every client reconnects.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import socketio

from tests.clients import https_session, serialized_tls_context
from tests.cluster import APP, RedisServer, peers_up
from tests.conftest import ROOT, free_port, stop_process, wait_for

#: set in the private network namespace the test re-runs itself in
NETNS_ENV = "MONOPORT_TEST_NETNS"
MIGRATE = Path("/proc/sys/net/ipv4/tcp_migrate_req")
HTTP_CLIENTS = 4
#: each HTTP client opens a new connection after this many requests
REQUESTS_PER_CONNECTION = 10
ROOMS = ["red", "green", "blue"]
SIO_CLIENTS = 6
#: members on the npm socket.io-client (the browser's client, in Node.js)
NODE_CLIENTS = 2
GRACEFUL = 5.0


def _ip_command() -> str:
    for candidate in (shutil.which("ip"), "/usr/sbin/ip", "/sbin/ip"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise AssertionError("ip (iproute2) is missing: run scripts/system-deps.sh")


def test_rolling_restart_of_two_peers_under_load_fails_no_request(request, tmp_path):
    if os.environ.get(NETNS_ENV) == "1":
        _rolling_restart(request.getfixturevalue("monoport"), request.getfixturevalue("tls_files"),
                         tmp_path)
        return
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is missing: run scripts/system-deps.sh"
    # as root a new network namespace is enough; otherwise a user namespace brings the right
    ns = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--net", "--map-root-user"]
    setup = f"{_ip_command()} link set lo up && echo 1 > {MIGRATE}"
    inner = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
             "--basetemp", str(tmp_path / "inner"), f"{__file__}::{request.node.name}"]
    env = dict(os.environ, **{NETNS_ENV: "1"})
    result = subprocess.run([*ns, "sh", "-c", setup + ' && exec "$@"', "sh", *inner], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    print(result.stdout)
    assert result.returncode == 0, result.stdout


class HttpLoad:
    """Strict HTTP/1.1 clients: keep-alive, a new connection every few requests, no retry."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.port, self.ctx = port, ctx
        self.stop = threading.Event()
        self.lock = threading.Lock()
        #: (finished at, instance id) of each good answer
        self.served: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.slowest = 0.0
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(HTTP_CLIENTS)]

    def start(self) -> "HttpLoad":
        for thread in self.threads:
            thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive(), "an HTTP client is stuck"

    def _run(self, index: int) -> None:
        conn = None
        n = 0
        deadline = time.monotonic() + 240  # bounded even if the test never says stop
        while not self.stop.is_set() and time.monotonic() < deadline:
            if conn is None or n % REQUESTS_PER_CONNECTION == 0:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=15)
            n += 1
            body = f"{index}:{n}".encode()
            started = time.monotonic()
            try:
                if n % 2:
                    conn.request("GET", "/environ")
                    response = conn.getresponse()
                    data = response.read()
                    ok = response.status == 200
                    instance = json.loads(data)["monoport.instance_id"] if ok else ""
                else:
                    conn.request("POST", "/echo", body=body)
                    response = conn.getresponse()
                    data = response.read()
                    ok = response.status == 200 and data == body
                    instance = "?"
                if not ok:
                    raise AssertionError(f"HTTP {response.status}: {data[:100]!r}")
                if response.will_close:
                    conn.close()  # the next request opens a new connection (http.client would too)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                with self.lock:
                    self.failures.append(f"{time.monotonic():.3f} client {index} request {n}: {exc!r}")
                conn.close()
                conn = None
                continue
            elapsed = time.monotonic() - started
            with self.lock:
                self.served.append((time.monotonic(), instance))
                self.slowest = max(self.slowest, elapsed)
        if conn is not None:
            conn.close()

    def served_between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(1 for at, _ in self.served if start <= at <= end)


class Member:
    """A Socket.IO client that joins its room on every connect, as a chat page does."""

    def __init__(self, room: str) -> None:
        self.room = room
        self.connects = 0
        self.joined = threading.Event()
        #: the Engine.IO session id of the last connect whose join was acknowledged
        self.sid: str | None = None
        self.messages: list[str] = []

    @property
    def instance(self) -> str:
        return (self.sid or "").partition(".")[0]


class RoomMember(Member):
    """On python-socketio's client."""

    def __init__(self, url: str, ca: str, room: str, transport: str) -> None:
        super().__init__(room)
        self.client = socketio.Client(
            http_session=https_session(ca), reconnection=True, reconnection_delay=0.3,
            reconnection_delay_max=1.5, websocket_extra_options={"sslopt": {"context": serialized_tls_context(ca)}})
        self.client.on("connect", self._on_connect)
        self.client.on("disconnect", lambda *reason: self.joined.clear())
        self.client.on("room_message", self.messages.append)
        self.client.connect(url, transports=[transport], wait_timeout=10)

    def _on_connect(self) -> None:
        self.connects += 1
        sid = self.client.eio.sid

        def acked(answer: str) -> None:
            if answer == "joined" and self.client.eio.sid == sid:
                self.sid = sid
                self.joined.set()

        self.client.emit("join", self.room, callback=acked)

    def close(self) -> None:
        self.client.disconnect()


class NodeMember(Member):
    """On the npm socket.io-client (tests/js/room_member.js), in Node.js."""

    def __init__(self, url: str, ca: str, room: str, transport: str) -> None:
        super().__init__(room)
        self.events: list[dict] = []
        node = shutil.which("node")
        assert node, "node is missing: run scripts/system-deps.sh"
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=ca, NODE_PATH=str(ROOT / "webapp" / "node_modules"))
        self.proc = subprocess.Popen([node, str(ROOT / "tests" / "js" / "room_member.js"), url, room, transport],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            event = json.loads(line)
            self.events.append(event)
            if event["event"] == "joined" and event["answer"] == "joined":
                self.connects += 1
                self.sid = event["sid"]
                self.joined.set()
            elif event["event"] == "disconnect":
                self.joined.clear()
            elif event["event"] == "message":
                self.messages.append(event["data"])

    def close(self) -> None:
        stop_process(self.proc, None, 10, readers=(self.reader,))  # its stdin closed, Node ends


def _rolling_restart(monoport, tls_files: dict[str, str], tmp_path: Path) -> None:
    assert MIGRATE.read_text().strip() == "1"
    redis = RedisServer(tmp_path).start()
    port = free_port()
    common = APP + ["--redis", redis.url, "--reuse-port", "--graceful-timeout", f"{GRACEFUL:g}",
                    "--cert", tls_files["localhost"], "--key", tls_files["localhost_key"]]
    ctx = ssl.create_default_context(cafile=tls_files["ca"])
    members: list[Member] = []
    servers: dict = {}
    try:
        servers.update({name: monoport(common + ["--instance-id", name], port=port) for name in ("a1", "b1")})
        peers_up(servers["a1"], 1)
        peers_up(servers["b1"], 1)
        load = HttpLoad(port, ctx).start()
        url = f"https://127.0.0.1:{port}"
        members = [RoomMember(url, tls_files["ca"], ROOMS[i % len(ROOMS)], ("websocket", "polling")[i % 2])
                   for i in range(SIO_CLIENTS)]
        members += [NodeMember(url, tls_files["ca"], ROOMS[i % len(ROOMS)], ("websocket", "polling")[i % 2])
                    for i in range(NODE_CLIENTS)]
        wait_for(lambda: all(m.joined.is_set() for m in members), 20, what="every Socket.IO client joined its room")
        time.sleep(1.0)  # the scenario: a second of steady load before, between and after the restarts
        windows = {}
        for old, new, other, up_count in (("a1", "a2", "b1", 2), ("b1", "b2", "a2", 1)):
            began = time.monotonic()
            servers[old].send(signal.SIGTERM)
            servers[old].proc.wait(GRACEFUL + 10)
            stopped = time.monotonic() - began
            assert servers[old].proc.returncode == 0, servers[old].log()
            # drained, not cut: nothing was left for the graceful timeout to close
            assert "still open" not in servers[old].log(), servers[old].log()[-3000:]
            servers[new] = monoport(common + ["--instance-id", new], port=port)
            peers_up(servers[new], 1)
            peers_up(servers[other], up_count)
            windows[old] = (began, time.monotonic(), stopped)
            time.sleep(1.0)
        # every client came back (on a2 or b2) and into its room
        wait_for(lambda: all(m.joined.is_set() and m.instance in ("a2", "b2") for m in members), 30,
                 what=lambda: "every Socket.IO client reconnected to a2 or b2 and joined its room again: "
                 + ", ".join(f"{m.instance or '-'}/{m.connects}" for m in members))
        time.sleep(2.0)
        load.finish()
        for room in ROOMS:
            inside = [m for m in members if m.room == room]
            token = f"hello {room} {time.monotonic()}"
            sender = next(m for m in inside if isinstance(m, RoomMember))
            assert sender.client.call("to_room", (room, token), timeout=10) == "sent"
            wait_for(lambda: all(token in m.messages for m in inside), 10, what=f"every member of {room} got {token}")
            assert not any(token in m.messages for m in members if m.room != room)
    finally:
        for member in members:
            member.close()
        for server in servers.values():
            server.stop()  # before Redis, which they would otherwise keep retrying
        redis.stop()

    served = len(load.served)
    by_instance = {name: sum(1 for _, i in load.served if i == name) for name in ("a1", "b1", "a2", "b2")}
    report = {
        "requests": served, "failed": len(load.failures), "slowest_s": round(load.slowest, 3),
        "get_by_instance": by_instance,
        "restarts": {old: {"stop_s": round(w[2], 2), "window_s": round(w[1] - w[0], 2),
                           "served_in_window": load.served_between(w[0], w[1])} for old, w in windows.items()},
        "sio_connects": [m.connects for m in members],
        "node_disconnect_reasons": sorted({e.get("reason", "") for m in members if isinstance(m, NodeMember)
                                           for e in m.events if e["event"] == "disconnect"}),
    }
    print("rolling restart:", json.dumps(report))
    assert not load.failures, "\n".join(load.failures[:20])
    for old, (start, end, _) in windows.items():
        assert load.served_between(start, end) > 0, f"no load while {old} restarted"
    assert all(by_instance.values()), by_instance  # the kernel spread the load over every instance
    assert all(m.connects >= 2 for m in members), [m.connects for m in members]
