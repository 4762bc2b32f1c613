"""The benchmark's own Socket.IO load client speaks the protocol monoport serves.

It talks Engine.IO/Socket.IO by hand (no client library), so it is checked
here against a real monoport serving the bench app: WebSocket and polling
echoes are acknowledged, and a broadcast reaches every idle client.
"""

import json
import subprocess
import sys

from tests.conftest import ROOT


def loadgen(port: int, mode: str, **args) -> subprocess.Popen:
    spec = dict(args, host="127.0.0.1", port=port)
    return subprocess.Popen([sys.executable, "-m", "bench.loadgen", mode, json.dumps(spec)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def read(proc: subprocess.Popen) -> dict:
    line = proc.stdout.readline()
    assert line, f"load generator exited with {proc.wait(10)}"
    return json.loads(line)


def test_echo_over_websocket_and_polling(monoport, tls_args):
    server = monoport(["--app", "bench.app:app", *tls_args])
    for mode in ("echo", "poll"):
        proc = loadgen(server.port, mode, clients=3, duration=1)
        try:
            assert read(proc) == {"ready": 3, "failed": 0}
            proc.stdin.write("go\n")
            proc.stdin.flush()
            result = read(proc)
            assert result["errors"] == 0
            assert result["count"] >= 3 and len(result["rtts"]) == result["count"]
        finally:
            proc.kill()
            proc.wait(10)


def test_broadcast_reaches_every_idle_client(monoport, tls_args):
    server = monoport(["--app", "bench.app:app", *tls_args])
    proc = loadgen(server.port, "idle", clients=20)
    try:
        assert read(proc) == {"ready": 20, "failed": 0}
        proc.stdin.write("bcast t1\nwait t1\n")
        proc.stdin.flush()
        t0 = read(proc)["t0"]
        report = read(proc)
        assert report["got"] == 20 and report["last"] >= t0
    finally:
        proc.kill()
        proc.wait(10)
