"""--workers N (SO_REUSEPORT, each worker an instance) and the start-time refusals without Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import requests

from monoport.config_sources import from_sources
from tests.clients import connection_per_request_client
from tests.cluster import APP
from tests.conftest import ROOT, wait_for


def test_two_workers_keep_a_polling_session_whichever_gets_the_request(redis_url, monoport):
    server = monoport(APP + ["--tls", "off", "--workers", "2", "--redis", redis_url, "--instance-id", "w"])
    wait_for(lambda: server.log().count(" up (conns ") >= 2, timeout=20)  # each worker sees the other
    client = connection_per_request_client(server.port)
    try:
        owner = client.eio.sid.partition(".")[0]
        assert owner in ("w0", "w1")
        for n in range(12):
            assert client.call("echo", n, timeout=10) == n
        assert client.call("whoami", timeout=10)["instance"] == owner
    finally:
        client.disconnect()
    # some requests reached the other worker, which forwarded them to the owner
    wait_for(lambda: f"forwarded to {owner}@" in server.log(), timeout=10)


def test_a_worker_that_dies_is_restarted(redis_url, monoport):
    server = monoport(APP + ["--tls", "off", "--workers", "2", "--redis", redis_url, "--instance-id", "w"])
    wait_for(lambda: "instance w1:" in server.log(), timeout=20)
    pid = int(re.search(r"worker w1 started \(pid (\d+)\)", server.log()).group(1))
    os.kill(pid, signal.SIGKILL)
    server.wait_log("worker w1 (pid %d) exited with -9; restarting" % pid, timeout=10)
    wait_for(lambda: server.log().count("worker w1 started") == 2, timeout=10)
    wait_for(lambda: server.log().count("instance w1:") == 2, timeout=20)
    assert requests.get(f"http://127.0.0.1:{server.port}/", timeout=5).text == "hello from flask"
    assert server.stop() == 0
    assert "master: all workers stopped" in server.log()


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WEB_CONCURRENCY", "PORT")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "monoport", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_peers_or_workers_without_redis_are_refused_at_start():
    for args, flag in ((["--peer", "127.0.0.1:9"], "--peer"), (["--workers", "2"], "--workers")):
        result = _run(["--check", "--tls", "off", *args])
        assert result.returncode == 2
        assert f"{flag}: " in result.stderr and "--redis" in result.stderr
        assert "Traceback" not in result.stderr


def test_web_concurrency_without_redis_means_one_worker_and_a_warning():
    config, ns = from_sources([], {"WEB_CONCURRENCY": "4"})
    assert config.workers == 1 and "WEB_CONCURRENCY=4 ignored without Redis" in ns.notes[0]
    config, ns = from_sources([], {"WEB_CONCURRENCY": "4", "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert config.workers == 4 and config.redis == "redis://127.0.0.1:1/0" and not ns.notes
    result = _run(["--check", "--tls", "off"], {"WEB_CONCURRENCY": "3"})
    assert result.returncode == 0 and "WEB_CONCURRENCY=3 ignored without Redis" in result.stderr


def test_check_reaches_redis_or_names_the_flag(redis_url):
    good = _run(["--check", "--tls", "off", "--redis", redis_url])
    assert good.returncode == 0 and "redis ok" in good.stdout
    bad = _run(["--check", "--tls", "off", "--redis", "redis://127.0.0.1:1/0"])
    assert bad.returncode == 2 and "--redis: cannot reach Redis" in bad.stderr


def _echo_through_both_workers(port: int, calls: int) -> tuple[str, list]:
    client = connection_per_request_client(port)
    try:
        answers = [client.call("echo", n, timeout=10) for n in range(calls)]
        assert client.connected
        return client.eio.sid, answers
    finally:
        client.disconnect()


def test_workers_route_each_others_sessions_from_the_first_request_and_after_a_restart(redis_url, monoport):
    server = monoport(APP + ["--tls", "off", "--workers", "2", "--redis", redis_url, "--instance-id", "w",
                             "--log-level", "debug"])  # an unknown session would be a debug line
    # at once: no worker has heard of the other through Redis or health yet
    _, answers = _echo_through_both_workers(server.port, 12)
    assert answers == list(range(12)), server.log()
    wait_for(lambda: "instance w1:" in server.log(), timeout=20, what=server.log)  # w1 may have been starting
    pid = int(re.search(r"worker w1 started \(pid (\d+)\)", server.log()).group(1))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: server.log().count("instance w1:") == 2, timeout=20, what=server.log)
    results: list = []
    clients = [threading.Thread(target=lambda: results.append(_echo_through_both_workers(server.port, 12)))
               for _ in range(3)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(60)
    assert len(results) == 3 and all(answers == list(range(12)) for _, answers in results), server.log()
    assert "Invalid session" not in server.log()
    assert "forwarded to w" in server.log()  # some requests reached the other worker
