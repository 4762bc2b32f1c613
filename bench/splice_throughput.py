"""One 100 MB stream through ``monoport --raw HOST:PORT`` on loopback, in MB/s.

    python -m bench.splice_throughput [--tls] [--direct] [--mb 100] [--rounds 3]

Starts bench.sink (swallows a stream, answers its byte count) and monoport
forwarding raw connections to it, then times sending the stream and reading
the count back (clear TCP: the client half-closes; the sink's count proves
every byte arrived). ``--tls`` puts TLS between client and monoport (the
portable recv/sendall path; TLS has no half-close, so the time is to the
last byte sent); ``--direct`` skips monoport, for the baseline.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def one_round(port: int, size: int, ctx: ssl.SSLContext | None) -> tuple[float, int | None]:
    chunk = os.urandom(1 << 20)
    sock = socket.create_connection(("127.0.0.1", port))
    if ctx is not None:
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    with sock:
        started = time.perf_counter()
        sock.sendall(b"\x01")  # sink mode: count
        for _ in range(size // len(chunk)):
            sock.sendall(chunk)
        count = None
        if ctx is None:
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while len(answer) < 8 and (data := sock.recv(8)):
                answer += data
            count = int.from_bytes(answer, "big")
        return time.perf_counter() - started, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--direct", action="store_true")
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sink_port, port = free_port(), free_port()
    certs = tempfile.mkdtemp(prefix="monoport-bench-")
    procs = [subprocess.Popen([sys.executable, "-m", "bench.sink", str(sink_port)], cwd=ROOT)]
    try:
        wait_port(sink_port)
        if not args.direct:
            cmd = [sys.executable, "-m", "monoport", "--bind", f"127.0.0.1:{port}", "--raw", f"127.0.0.1:{sink_port}",
                   "--app", "monoport.builtin_app", "--certs-dir", certs, "--tls", "auto" if args.tls else "off"]
            procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(port)
        ctx = ssl.create_default_context(cafile=f"{certs}/monoport-dev-ca.pem") if args.tls else None
        size = args.mb * 1024 * 1024
        for n in range(args.rounds):
            seconds, count = one_round(sink_port if args.direct else port, size, ctx)
            assert count in (None, size), f"the sink counted {count} of {size} bytes"
            print(f"round {n}: {size / seconds / 1e6:.0f} MB/s ({args.mb} MiB in {seconds:.2f} s)")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
