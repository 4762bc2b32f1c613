"""The workloads: each runs against one started target and returns its metrics.

A metric is a flat ``{"name": value}`` entry; :mod:`bench.report` knows each
metric's unit and direction. The Socket.IO load runs in separate
:mod:`bench.loadgen` processes (several, so the client is not the
bottleneck), which connect first and start on a common "go", so connecting
is never counted as load.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from .targets import Target


@dataclass(frozen=True)
class Scale:
    """How long and how big: ``full`` fits 20 minutes on 2 cores, ``quick`` is a smoke run."""

    wrk_seconds: float = 6
    wrk_connections: int = 50
    handshake_connections: int = 20
    echo_clients: int = 100
    echo_seconds: float = 6
    poll_clients: int = 50
    poll_seconds: float = 6
    idle_clients: int = 2000
    broadcasts: int = 3
    raw_seconds: float = 4
    max_clients: int = 10000
    loadgen_procs: int = 2
    storm_clients: int = 5000
    storm_procs: int = 4


QUICK = Scale(wrk_seconds=2, echo_seconds=2, poll_seconds=2, idle_clients=300, broadcasts=1, raw_seconds=1,
              max_clients=1000, storm_clients=300)


# -- wrk ---------------------------------------------------------------------------
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * _UNITS[unit]


def parse_wrk(out: str) -> dict[str, float]:
    """wrk's ``--latency`` report -> rate, requests, p50/p99 (ms) and errors (socket errors and non-2xx)."""
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50_ms": _ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
            "p99_ms": _ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
            "errors": errors + (int(bad.group(1)) if bad else 0)}


def keepalive(target: Target, scale: Scale) -> dict[str, float]:
    """wrk, one thread, kept-alive connections (it never busy-polls here: no handshake is pending)."""
    argv = ["wrk", "-t1", f"-c{scale.wrk_connections}", f"-d{scale.wrk_seconds}s", "--latency", "--timeout", "10s"]
    cpu = target.cpu()
    out = subprocess.run(argv + [target.url], capture_output=True, text=True, timeout=scale.wrk_seconds + 60).stdout
    cpu = target.cpu() - cpu
    found = parse_wrk(out)
    return {"keepalive_rps": found["rps"], "keepalive_p50_ms": found["p50_ms"], "keepalive_p99_ms": found["p99_ms"],
            "keepalive_errors": found["errors"], "keepalive_cpu_us": cpu_per_op_us(cpu, found["requests"])}


def handshake(target: Target, scale: Scale) -> dict[str, float]:
    """Full TLS handshakes: a new connection per request, no session offered."""
    return closed_loop(target, scale, "full", scale.handshake_connections, scale.wrk_seconds, "handshake", "rps")


def resumed(target: Target, scale: Scale) -> dict[str, float]:
    """Resumed TLS handshakes: each connection offers the session its predecessor got."""
    return closed_loop(target, scale, "resumed", scale.handshake_connections, scale.wrk_seconds, "resumed", "rps")


# -- Socket.IO through the load generator -------------------------------------------
class Loadgen:
    """Several :mod:`bench.loadgen` processes sharing ``clients`` between them."""

    def __init__(self, target: Target, mode: str, clients: int, procs: int, **args: Any) -> None:
        self.procs = []
        base, extra = divmod(clients, procs)
        for i in range(procs):
            spec = dict(args, clients=base + (i < extra), host="127.0.0.1", port=target.port)
            self.procs.append(subprocess.Popen(
                [target.env.python, "-m", "bench.loadgen", mode, json.dumps(spec)], cwd=target.env.root,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                preexec_fn=_loadgen_limits))
        self.ready = [self.read(p) for p in self.procs]

    @staticmethod
    def read(proc: subprocess.Popen) -> dict:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator {proc.pid} exited with {proc.wait()}")
        return json.loads(line)

    @property
    def connected(self) -> int:
        return sum(r["ready"] for r in self.ready)

    def tell(self, proc: subprocess.Popen, line: str) -> None:
        proc.stdin.write(line + "\n")
        proc.stdin.flush()

    def close(self) -> None:
        """Kill and reap every load generator, and close our ends of its pipes (else the garbage
        collector finds them open and says so)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):  # unflushed bytes to a process that is gone
                    pipe.close()


def _loadgen_limits() -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def closed_loop(target: Target, scale: Scale, mode: str, clients: int, seconds: float, key: str = "",
                rate: str = "msgs") -> dict[str, float]:
    """``clients`` back-to-back loops in the load generators; metrics named ``{key}_{rate}`` etc."""
    gen = Loadgen(target, mode, clients, scale.loadgen_procs, duration=seconds)
    try:
        cpu = target.cpu()
        for proc in gen.procs:
            gen.tell(proc, "go")
        results = [gen.read(p) for p in gen.procs]
        cpu = target.cpu() - cpu
    finally:
        gen.close()
    return loop_metrics(key or mode, rate, results, seconds, cpu, clients - gen.connected)


def loop_metrics(key: str, rate: str, results: list[dict], seconds: float, cpu: float, missing: int = 0
                 ) -> dict[str, float]:
    """The load generators' reports (count, rtts, errors, maybe reused) and the target's CPU seconds -> metrics."""
    rtts = sorted(r for res in results for r in res["rtts"])
    count = sum(res["count"] for res in results)
    metrics = {f"{key}_{rate}": count / seconds, f"{key}_p50_ms": _pct(rtts, 50), f"{key}_p99_ms": _pct(rtts, 99),
               f"{key}_errors": sum(res["errors"] for res in results) + missing,
               f"{key}_cpu_us": cpu_per_op_us(cpu, count)}
    if any("reused" in res for res in results):
        metrics[f"{key}_reused"] = sum(res.get("reused", 0) for res in results) / max(1, count)
    if any("client_cpu" in res for res in results):
        metrics[f"{key}_client_cpu_us"] = cpu_per_op_us(sum(res.get("client_cpu", 0.0) for res in results), count)
    return metrics


def cpu_per_op_us(cpu_seconds: float, operations: int) -> float:
    """The target's CPU time per operation in µs (NaN when nothing was served: no figure, not zero)."""
    return cpu_seconds / operations * 1e6 if operations > 0 else float("nan")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * q / 100))]


def ws_echo(target: Target, scale: Scale) -> dict[str, float]:
    return closed_loop(target, scale, "echo", scale.echo_clients, scale.echo_seconds)


def poll_echo(target: Target, scale: Scale) -> dict[str, float]:
    return closed_loop(target, scale, "poll", scale.poll_clients, scale.poll_seconds)


def broadcast(gen: Loadgen, tag: str) -> tuple[float, int]:
    """Seconds until every connected client had broadcast ``tag``, and how many got it."""
    first = gen.procs[0]
    gen.tell(first, f"bcast {tag}")
    t0 = gen.read(first)["t0"]
    for proc in gen.procs:
        gen.tell(proc, f"wait {tag}")
    reports = [gen.read(p) for p in gen.procs]
    got = sum(r["got"] for r in reports)
    last = max((r["last"] for r in reports if r["last"]), default=t0)
    return last - t0, got


def idle(target: Target, scale: Scale) -> dict[str, float]:
    base = target.rss()
    gen = Loadgen(target, "idle", scale.idle_clients, max(2, scale.loadgen_procs))
    try:
        time.sleep(1)
        rss = target.rss()
        times = []
        for i in range(scale.broadcasts):
            seconds, got = broadcast(gen, f"b{i}")
            times.append(seconds)
        connected = gen.connected
    finally:
        gen.close()
    return {"idle_rss_mb": rss / 2**20, "idle_kb_per_conn": (rss - base) / 1024 / max(1, connected),
            "bcast_ms": statistics.median(times) * 1000, "idle_connected": connected, "bcast_got": got}


SIO_WORKLOADS = {"keepalive": keepalive, "handshake": handshake, "resumed": resumed, "echo": ws_echo,
                 "poll": poll_echo, "idle": idle}


def storm(target: Target, scale: Scale) -> dict[str, float]:
    """Socket.IO WebSocket clients over TLS lose their server at once: seconds until every one is back.

    ``target.disrupt()`` is what its users would do: monoport drains one of
    two instances sharing the port (its clients reconnect to the other);
    the others are stopped and started again on the same port.
    """
    gen = Loadgen(target, "storm", scale.storm_clients, scale.storm_procs)
    try:
        connected = gen.connected
        time.sleep(1)
        t0 = time.time()
        target.disrupt()
        for proc in gen.procs:
            gen.tell(proc, "wait")
        reports = [gen.read(p) for p in gen.procs]
    finally:
        gen.close()
    return storm_metrics(t0, reports, scale.storm_clients, connected)


def storm_metrics(t0: float, reports: list[dict], tried: int, connected: int) -> dict[str, float]:
    """The load generators' storm reports -> seconds until the last dropped client was back, and the lost."""
    dropped = sum(r["dropped"] for r in reports)
    back = sum(r["back"] for r in reports)
    last = max((r["last"] for r in reports if r["last"]), default=t0)
    return {"storm_s": last - t0, "storm_dropped": dropped, "storm_lost": dropped - back + (tried - connected),
            "storm_clients": connected}


# -- raw TCP ----------------------------------------------------------------------
def raw(target: Target, scale: Scale) -> dict[str, float]:
    """One stream's upload throughput, then 64-byte ping-pong, through the forwarder."""
    chunk = memoryview(bytearray(256 * 1024))
    with socket.create_connection(("127.0.0.1", target.port)) as s:
        s.sendall(b"\x01")
        sent, start = 0, time.monotonic()
        while time.monotonic() - start < scale.raw_seconds:
            s.sendall(chunk)
            sent += len(chunk)
        s.shutdown(socket.SHUT_WR)
        got = int.from_bytes(_recv_exactly(s, 8), "big")
        elapsed = time.monotonic() - start
    if got != sent:
        raise RuntimeError(f"{target.name}: sent {sent} bytes, the sink got {got}")
    with socket.create_connection(("127.0.0.1", target.port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"\x02")
        ping, rounds, start = b"\x07" * 64, 0, time.monotonic()
        cpu = target.cpu()
        while time.monotonic() - start < scale.raw_seconds:
            s.sendall(ping)
            _recv_exactly(s, 64)
            rounds += 1
        pingpong = rounds / (time.monotonic() - start)
        cpu = target.cpu() - cpu
    return {"raw_gbps": sent * 8 / elapsed / 1e9, "raw_pingpong": pingpong,
            "raw_pingpong_cpu_us": cpu / max(1, rounds) * 1e6}


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise RuntimeError("forwarder closed the connection")
        data += more
    return data


# -- capacity of one monoport process ----------------------------------------------
def max_clients(target: Target, scale: Scale, procs: int = 8) -> dict[str, float]:
    """Connect up to ``scale.max_clients`` WebSocket clients; all must get a broadcast."""
    base = target.rss()
    gen = Loadgen(target, "idle", scale.max_clients, procs)
    try:
        time.sleep(1)
        rss = target.rss()
        seconds, got = broadcast(gen, "max")
        connected = gen.connected
    finally:
        gen.close()
    return {"max_clients": got, "max_tried": scale.max_clients, "max_connected": connected,
            "max_rss_mb": rss / 2**20, "max_kb_per_conn": (rss - base) / 1024 / max(1, connected),
            "max_bcast_ms": seconds * 1000}
