"""The benchmark's own Socket.IO load client speaks the protocol monoport serves.

It talks Engine.IO/Socket.IO by hand (no client library), so it is checked
here against a real monoport serving the bench app: WebSocket and polling
echoes are acknowledged, and a broadcast reaches every idle client.
"""

import dataclasses
import json
import signal
import subprocess
import sys

from tests.conftest import ROOT, stop_process


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
            stop_process(proc, signal.SIGKILL, 10)


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
        stop_process(proc, signal.SIGKILL, 10)


def run_go(proc: subprocess.Popen) -> dict:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return read(proc)


def test_full_handshakes_offer_no_session_and_resumed_ones_are_resumed(monoport, tls_args):
    server = monoport(["--app", "bench.app:app", *tls_args])
    got = {}
    for mode in ("full", "resumed"):
        proc = loadgen(server.port, mode, clients=2, duration=1)
        try:
            assert read(proc) == {"ready": 2, "failed": 0}
            got[mode] = run_go(proc)
        finally:
            stop_process(proc, signal.SIGKILL, 10)
    assert got["full"]["errors"] == 0 and got["full"]["count"] >= 4
    assert got["full"]["reused"] == 0
    # each loop's first connection has nothing to offer; the others resume
    assert got["resumed"]["errors"] == 0 and got["resumed"]["reused"] >= got["resumed"]["count"] - 2 > 0
    assert got["resumed"]["client_cpu"] > 0


def test_uvicorn_twin_of_the_app_answers_the_same_echo_and_page(tmp_path, tls_files):
    from bench.targets import Env, Uvicorn

    target = Uvicorn("uvicorn", Env(tmp_path, tls_files["localhost"], tls_files["localhost_key"]))
    try:
        target.start()  # ready means `/` answered 200 and Socket.IO answered
        proc = loadgen(target.port, "echo", clients=2, duration=1)
        try:
            assert read(proc) == {"ready": 2, "failed": 0}
            result = run_go(proc)
            assert result["errors"] == 0 and result["count"] >= 2
        finally:
            stop_process(proc, signal.SIGKILL, 10)
    finally:
        target.stop()
    assert not any(p.poll() is None for p in target.procs)


def test_storm_clients_all_come_back_after_their_server_restarts(tmp_path, tls_files):
    from bench.targets import BareNoDelay, Env
    from bench.workloads import QUICK, storm

    target = BareNoDelay("bare-nodelay", Env(tmp_path, tls_files["localhost"], tls_files["localhost_key"]))
    try:
        target.start()
        before = [p.pid for p in target.procs]
        metrics = storm(target, dataclasses.replace(QUICK, storm_clients=12, storm_procs=2))
        assert [p.pid for p in target.procs] != before  # the process was restarted
    finally:
        target.stop()
    assert metrics["storm_clients"] == 12 and metrics["storm_dropped"] == 12
    assert metrics["storm_lost"] == 0 and 0 < metrics["storm_s"] < 60
