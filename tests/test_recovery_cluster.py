"""Connection state recovery through Redis: across instances, a SIGKILL and a Redis restart.

Two monoport instances share one port (``--reuse-port``) and a real Redis;
npm socket.io-client members (Node.js) sit in a room. Every message is in
one Redis Stream, every session in a Redis key written through as it
changes, so a client comes back with its id, rooms and missed messages on
whichever instance takes its reconnection -- one started after its first
server stopped, or after its first server was killed.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.clients import sio_client
from tests.cluster import APP, RedisServer, peers_up
from tests.conftest import free_port, wait_for


@pytest.fixture
def redis(tmp_path):
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def _instances(monoport, tls_args, redis_url: str, names, port: int, recovery: str = "30"):
    common = APP + tls_args + ["--redis", redis_url, "--reuse-port", "--graceful-timeout", "5",
                               "--log-level", "debug"] + (["--recovery", recovery] if recovery else [])
    return {name: monoport(common + ["--instance-id", name], port=port) for name in names}


def _client_on(url: str, ca: str, instance: str):
    """A python-socketio client served by ``instance`` (the kernel picks among instances sharing the port)."""
    for _ in range(30):
        client = sio_client(url, ca, ["websocket"])
        if client.eio.sid.startswith(instance + "."):
            return client
        client.disconnect()
    raise AssertionError(f"no connection landed on {instance}")


def test_a_client_recovers_on_another_instance_after_its_own_is_killed(
        monoport, tls_args, tls_files, node_clients, redis):
    port = free_port()
    servers = _instances(monoport, tls_args, redis.url, ["a1", "b1"], port)
    url = f"https://127.0.0.1:{port}"
    member = node_clients(url, tls_files["ca"], reconnect_delay_ms=500)
    first = member.joined()
    home = first["id"].partition(".")[0]
    other = "b1" if home == "a1" else "a1"
    peers_up(servers[other], 1)
    publisher = _client_on(url, tls_files["ca"], other)
    try:
        assert publisher.call("to_room", ("r", 1), timeout=10) == "sent"
        wait_for(lambda: member.messages("room_message"), 10)
        servers[home].send(signal.SIGKILL)
        servers[home].proc.wait(10)
        for n in (2, 3):
            assert publisher.call("to_room", ("r", n), timeout=10) == "sent"
        again = member.wait("connect", 2, timeout=20)
        assert again["recovered"] is True and again["id"] == first["id"]
        assert again["eio"].startswith(other + ".")
        assert publisher.call("to_room", ("r", 4), timeout=10) == "sent"
        wait_for(lambda: len(member.messages("room_message")) >= 4, 10)
    finally:
        publisher.disconnect()
    assert [args[0] for args in member.messages("room_message")] == [1, 2, 3, 4]
    assert len(member.of("joined")) == 1  # never joined again: its rooms came back
    servers[home].allow_traceback = True  # killed: its log just stops
