"""A lean Socket.IO load client: Engine.IO v4 spoken directly, one greenlet per client.

Run as a separate process by the bench (``python -m bench.loadgen MODE JSON``)
so that the client is not the bottleneck: no client library, no event
machinery, just TLS sockets, hand-built WebSocket frames (a zero masking
key, which RFC 6455 allows, so payloads need no XOR) and the few Socket.IO
packets the workloads use::

    < 0{"sid":...}            Engine.IO open
    > 40                      Socket.IO connect to "/"
    < 40{"sid":...}
    > 421["echo","..."]       event with ack id 1
    < 431["..."]              the ack
    < 2   > 3                 Engine.IO ping / pong
    < 42["news","TAG"]        a broadcast

Mode ``storm`` holds WebSocket clients that reconnect as socket.io-client
does when their server goes away (first try after 1 s ± 50 %, doubling up to
5 s, never giving up before ``STORM_GIVE_UP`` s); ``wait`` reports how many
dropped, how many came back and when the last one did.

Two more modes measure TLS handshakes without wrk (which busy-polls while a
handshake is pending): ``full`` opens a new TLS connection per request and
offers no session; ``resumed`` offers the session (TLS 1.3 ticket) its last
connection received. Each connection sends one ``GET /`` with
``Connection: close``, reads the response and closes; the same client
settings for every target, waiting for readability as gevent does.

Protocol with the bench (one JSON object per line on stdout, commands on
stdin): every mode first connects its clients and prints ``{"ready": n,
"failed": m}``, then waits for ``go`` (echo, poll) or serves commands (idle:
``bcast TAG``, ``wait TAG``, ``quit``).
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.fileobject import FileObjectPosix  # noqa: E402
from gevent.pool import Pool  # noqa: E402

from bench.backoff import reconnect_delay  # noqa: E402

#: How many clients connect at the same time: enough to keep the target
#: busy, few enough that no SYN is dropped and retried after a second.
CONNECT_CONCURRENCY = 32
CONNECT_TIMEOUT = 60.0
PAYLOAD = "hello-from-the-bench-0123456789"

#: No CA store: nothing is verified, and OpenSSL would still walk the chain against one.
_CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_CTX.check_hostname = False
_CTX.verify_mode = ssl.CERT_NONE


class ProtocolError(Exception):
    pass


class Conn:
    """One TLS (or clear) connection with a read buffer."""

    def __init__(self, host: str, port: int, tls: bool, session: ssl.SSLSession | None = None) -> None:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = _CTX.wrap_socket(sock, server_hostname="localhost", session=session) if tls else sock
        self.buf = bytearray()

    def fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ProtocolError("connection closed")
        self.buf += data

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_until(self, mark: bytes) -> bytes:
        while True:
            i = self.buf.find(mark)
            if i >= 0:
                data = bytes(self.buf[:i])
                del self.buf[: i + len(mark)]
                return data
            self.fill()

    def read_http(self) -> tuple[int, dict, bytes]:
        head = self.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = self.read_exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0], 16)
                parts.append(self.read_exactly(size))
                self.read_until(b"\r\n")
                if size == 0:
                    break
            body = b"".join(parts)
        else:
            body = b""
        return status, headers, body


class WSClient(Conn):
    """Socket.IO over a WebSocket."""

    def __init__(self, host: str, port: int, tls: bool) -> None:
        super().__init__(host, port, tls)
        self.sock.sendall(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: localhost\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        head = self.read_until(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ProtocolError(head.split(b"\r\n")[0].decode("latin-1"))
        self.sock.settimeout(None)
        if not self.recv().startswith("0"):
            raise ProtocolError("no Engine.IO open packet")
        self.send("40")
        while not (packet := self.recv()).startswith("40"):
            pass
        self.news: dict[str, float] = {}

    def send(self, text: str) -> None:
        data = text.encode()
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x81, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0x81, 0xFF, n)
        self.sock.sendall(head + b"\0\0\0\0" + data)

    def recv(self) -> str:
        """The next text message; answers pings (WebSocket and Engine.IO) on the way."""
        while True:
            b0, b1 = self.read_exactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self.read_exactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self.read_exactly(8))
            payload = self.read_exactly(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ProtocolError("server closed the WebSocket")
            if opcode == 0x9:
                self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | n) + b"\0\0\0\0" + payload)
                continue
            text = payload.decode()
            if text == "2":
                self.send("3")
                continue
            return text

    def close(self) -> None:
        try:
            self.send("41")
            self.sock.sendall(b"\x88\x80\0\0\0\0")
        except OSError:
            pass
        self.sock.close()

    def echo(self, payload: str) -> None:
        self.send('421["echo",' + json.dumps(payload) + "]")
        while not self.recv().startswith("431"):
            pass

    def listen(self) -> None:
        """Record when each broadcast arrives (idle clients)."""
        try:
            while True:
                text = self.recv()
                if text.startswith('42["news"'):
                    self.news[json.loads(text[2:])[1]] = time.time()
        except (OSError, ProtocolError):
            self.news["closed"] = time.time()


class PollClient(Conn):
    """Socket.IO over Engine.IO long-polling, one keep-alive connection."""

    def __init__(self, host: str, port: int, tls: bool) -> None:
        self.addr = (host, port, tls)
        super().__init__(host, port, tls)
        self.sid = ""
        packets = self.request("GET")
        if not packets or not packets[0].startswith("0"):
            raise ProtocolError("no Engine.IO open packet")
        self.sid = json.loads(packets[0][1:])["sid"]
        self.sock.settimeout(None)
        self.request("POST", "40")
        while not any(p.startswith("40") for p in self.request("GET")):
            pass

    def request(self, method: str, body: str = "") -> list[str]:
        query = "EIO=4&transport=polling" + (f"&sid={self.sid}" if self.sid else "")
        data = body.encode()
        head = (f"{method} /socket.io/?{query} HTTP/1.1\r\nHost: localhost\r\n"
                + (f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(data)}\r\n" if method == "POST" else "")
                + "\r\n")
        self.sock.sendall(head.encode() + data)
        status, headers, reply = self.read_http()
        if status != 200:
            raise ProtocolError(f"{method} -> {status}: {reply[:100]!r}")
        if headers.get("connection", "").lower() == "close":
            self.sock.close()
            Conn.__init__(self, *self.addr)
            self.sock.settimeout(None)
        return reply.decode().split("\x1e") if method == "GET" else []

    def close(self) -> None:
        """Say goodbye (Engine.IO close packet): a server keeps a silent session for a while."""
        try:
            self.request("POST", "1")
        except (OSError, ProtocolError):
            pass
        self.sock.close()

    def echo(self, payload: str) -> None:
        self.request("POST", '421["echo",' + json.dumps(payload) + "]")
        while True:
            packets = self.request("GET")
            if "2" in packets:
                self.request("POST", "3")
            if any(p.startswith("431") for p in packets):
                return


def connect_all(cls: type, n: int, host: str, port: int, tls: bool) -> tuple[list, int]:
    clients, failed = [], [0]

    def one(_: int) -> None:
        try:
            clients.append(cls(host, port, tls))
        except (OSError, ProtocolError, ValueError):
            failed[0] += 1

    pool = Pool(CONNECT_CONCURRENCY)
    pool.map(one, range(n))
    return clients, failed[0]


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def run_closed_loop(clients: list, duration: float) -> None:
    """Each client echoes back to back for ``duration`` s; RTTs in ms on stdout."""
    rtts: list[float] = []
    errors = [0]
    stop_at = time.monotonic() + duration

    def loop(client) -> None:
        try:
            while (start := time.monotonic()) < stop_at:
                client.echo(PAYLOAD)
                rtts.append(round((time.monotonic() - start) * 1000, 3))
        except (OSError, ProtocolError):
            errors[0] += 1

    gevent.joinall([gevent.spawn(loop, c) for c in clients])
    gevent.joinall([gevent.spawn(c.close) for c in clients], timeout=5)
    emit({"count": len(rtts), "rtts": rtts, "errors": errors[0], "duration": duration})


def run_handshakes(args: dict, resume: bool, duration: float) -> None:
    """``clients`` loops of one TLS connection per request for ``duration`` s; latencies in ms."""
    rtts: list[float] = []
    reused, errors = [0], [0]
    stop_at = time.monotonic() + duration
    cpu = time.process_time()

    def loop() -> None:
        session = None
        while (start := time.monotonic()) < stop_at:
            try:
                conn = Conn(args["host"], args["port"], True, session if resume else None)
                try:
                    conn.sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    status, _, _ = conn.read_http()
                    reused[0] += conn.sock.session_reused
                    session = conn.sock.session
                finally:
                    conn.sock.close()
                if status != 200:
                    raise ProtocolError(f"status {status}")
                rtts.append(round((time.monotonic() - start) * 1000, 3))
            except (OSError, ProtocolError, ValueError):
                errors[0] += 1
                gevent.sleep(0.01)

    gevent.joinall([gevent.spawn(loop) for _ in range(args["clients"])])
    emit({"count": len(rtts), "rtts": rtts, "errors": errors[0], "reused": reused[0], "duration": duration,
          "client_cpu": time.process_time() - cpu})


#: a client still not back this long after its drop has given up (counted as lost)
STORM_GIVE_UP = 120.0


class StormClient:
    """A WebSocket client that reconnects with socket.io-client's backoff whenever it is dropped."""

    def __init__(self, host: str, port: int, tls: bool) -> None:
        self.addr = (host, port, tls)
        self.ws = WSClient(host, port, tls)
        self.dropped: float | None = None
        self.back: float | None = None
        self.down = False

    def run(self) -> None:
        while True:
            try:
                while True:
                    self.ws.recv()
            except (OSError, ProtocolError, ValueError):
                pass
            self.ws.sock.close()
            self.down, self.dropped = True, time.time()
            attempt = 0
            while time.time() - self.dropped < STORM_GIVE_UP:
                gevent.sleep(reconnect_delay(attempt, random.random()))
                attempt += 1
                try:
                    self.ws = WSClient(*self.addr)
                except (OSError, ProtocolError, ValueError):
                    continue
                self.down, self.back = False, time.time()
                break
            else:
                return  # gave up: stays down


def serve_storm(clients: list, lines) -> None:
    for client in clients:
        gevent.spawn(client.run)
    for line in lines:
        if line.decode().strip() != "wait":
            break
        deadline = time.monotonic() + STORM_GIVE_UP + 10
        while time.monotonic() < deadline:
            last_drop = max((c.dropped for c in clients if c.dropped), default=0.0)
            if not any(c.down for c in clients) and time.time() - last_drop > 1.0:
                break
            gevent.sleep(0.1)
        dropped = [c for c in clients if c.dropped]
        back = [c.back for c in dropped if not c.down and c.back]
        emit({"dropped": len(dropped), "back": len(back), "last": max(back) if back else None})


def serve_idle(clients: list, lines) -> None:
    for client in clients:
        gevent.spawn(client.listen)
    for line in lines:
        cmd, _, tag = line.decode().strip().partition(" ")
        if cmd == "bcast":
            t0 = time.time()
            clients[0].send('42["bcast",' + json.dumps(tag) + "]")
            emit({"t0": t0})
        elif cmd == "wait":
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and sum(tag in c.news or "closed" in c.news for c in clients) < len(clients):
                gevent.sleep(0.05)
            got = [c.news[tag] for c in clients if tag in c.news]
            emit({"got": len(got), "last": max(got) if got else None,
                  "closed": sum("closed" in c.news for c in clients)})
        elif cmd == "quit":
            break


def main(argv: list[str]) -> None:
    mode, args = argv[0], json.loads(argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if mode in ("full", "resumed"):
        emit({"ready": args["clients"], "failed": 0})
        FileObjectPosix(sys.stdin.fileno(), "rb").readline()  # "go"
        run_handshakes(args, mode == "resumed", args["duration"])
        return
    cls = {"poll": PollClient, "storm": StormClient}.get(mode, WSClient)
    clients, failed = connect_all(cls, args["clients"], args["host"], args["port"], args.get("tls", True))
    emit({"ready": len(clients), "failed": failed})
    lines = FileObjectPosix(sys.stdin.fileno(), "rb")
    if mode == "storm":
        serve_storm(clients, lines)
    elif mode in ("echo", "poll"):
        lines.readline()  # "go"
        run_closed_loop(clients, args["duration"])
    else:
        serve_idle(clients, lines)


if __name__ == "__main__":
    main(sys.argv[1:])
