"""Connection state recovery through Redis: across instances, a SIGKILL and a Redis restart.

Two monoport instances share one port (``--reuse-port``) and a real Redis;
npm socket.io-client members (Node.js) sit in a room. Every message is in
one Redis Stream, every session in a Redis key written through as it
changes, so a client comes back with its id, rooms and missed messages on
whichever instance takes its reconnection -- one started after its first
server stopped, or after its first server was killed.
"""

from __future__ import annotations

import json
import signal
import time

from tests.clients import sio_client
from tests.cluster import APP, RedisServer, peers_up
from tests.conftest import free_port, wait_for


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
        monoport, tls_args, tls_files, node_clients, redis_server):
    port = free_port()
    servers = _instances(monoport, tls_args, redis_server.url, ["a1", "b1"], port)
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


class Publisher:
    """A numbered message to a room every 5 ms (200/s), emitted by the app on an instance never restarted.

    The app emits them from one greenlet (tests/apps/echo_app.py, start_stream), so they enter the
    stream in order; this client only starts and stops it.
    """

    def __init__(self, url: str, ca: str, room: str = "r", interval: float = 0.005) -> None:
        self.client = sio_client(url, ca, ["websocket"])
        self.room = room
        assert self.client.call("start_stream", (room, interval), timeout=10) == "started"

    def stop(self) -> int:
        try:
            return self.client.call("stop_stream", self.room, timeout=30)
        finally:
            self.client.disconnect()


def _tally(member: NodeClient, sent: int) -> dict:
    """Lost, duplicated and out-of-order numbers in what ``member`` received of ``range(sent)``."""
    got = [args[0] for args in member.messages("room_message")]
    seen = set(got)
    return {"lost": sum(1 for n in range(sent) if n not in seen), "duplicated": len(got) - len(seen),
            "out_of_order": sum(1 for a, b in zip(got, got[1:]) if b < a)}


def _timeline(member: NodeClient) -> list:
    """What ``member`` saw, runs of consecutive numbers folded into [first, last] (printed with the report)."""
    line: list = []
    for event in list(member.events):
        if event["event"] != "message":
            line.append({k: v for k, v in event.items() if k in ("event", "reason", "recovered", "eio")})
        elif line and isinstance(line[-1], list) and line[-1][1] == event["args"][0] - 1:
            line[-1][1] = event["args"][0]
        else:
            line.append([event["args"][0], event["args"][0]])
    return line


def _stream_to_members(monoport, tls_args, tls_files, node_clients, redis, recovery, disturb,
                       transports=("websocket", "polling")) -> dict:
    """Members on a shared port, a publisher on its own instance, ``disturb`` in the middle; the tallies."""
    port = free_port()
    servers = _instances(monoport, tls_args, redis.url, ["a1", "b1"], port, recovery)
    servers.update(_instances(monoport, tls_args, redis.url, ["p"], free_port(), recovery))
    url = f"https://127.0.0.1:{port}"
    members = [node_clients(url, tls_files["ca"], transport=transports[i % len(transports)])
               for i in range(4)]
    for member in members:
        member.joined()
    peers_up(servers["p"], 2)
    publisher = Publisher(servers["p"].url, tls_files["ca"])
    began = time.monotonic()
    try:
        time.sleep(0.5)  # the scenario: the stream runs before and after the disturbance
        disturb(servers, url)
        time.sleep(1.0)
    finally:
        sent = publisher.stop()
    seconds = time.monotonic() - began
    try:  # the last messages are on their way
        wait_for(lambda: not any(_tally(m, sent)["lost"] for m in members), 10 if recovery else 3, interval=0.1)
    except AssertionError:
        pass  # some never come (without recovery, what is lost is lost): the report counts them
    report = {"sent": sent, "per_second": round(sent / seconds), "members": [_tally(m, sent) for m in members],
              "reconnects": [[c["recovered"] for c in m.of("connect")[1:]] for m in members],
              "ids_kept": [len({c["id"] for c in m.of("connect")}) == 1 for m in members],
              "disconnects": sorted({d["reason"] for m in members for d in m.of("disconnect")}),
              "readers_resumed": sum("message stream resumed after" in s.log() for s in servers.values())}
    print(f"recovery={recovery or 'off'}:", json.dumps(report))
    for index, member in enumerate(members):
        print(f"member {index}:", json.dumps(_timeline(member)))
    return report


def _rolling_restart(monoport, tls_args, redis, recovery):
    def restart(servers, url):
        for old, new in (("a1", "a2"), ("b1", "b2")):
            servers[old].stop()
            servers.update(_instances(monoport, tls_args, redis.url, [new], servers[old].port, recovery))
            peers_up(servers[new], 2)
            time.sleep(1.0)  # the scenario: the stream runs a while between restarts
    return restart


def test_rolling_restart_under_a_200_per_second_room_stream_loses_nothing_with_recovery(
        monoport, tls_args, tls_files, node_clients, redis_server):
    report = _stream_to_members(monoport, tls_args, tls_files, node_clients, redis_server, "30",
                                _rolling_restart(monoport, tls_args, redis_server, "30"))
    assert report["sent"] > 500, report
    assert all(t == {"lost": 0, "duplicated": 0, "out_of_order": 0} for t in report["members"]), report
    assert all(r and all(r) for r in report["reconnects"]), report  # each member came back, always recovered
    assert all(report["ids_kept"]), report


def test_rolling_restart_without_recovery_loses_messages(monoport, tls_args, tls_files, node_clients, redis_server):
    report = _stream_to_members(monoport, tls_args, tls_files, node_clients, redis_server, None,
                                _rolling_restart(monoport, tls_args, redis_server, None))
    assert sum(t["lost"] for t in report["members"]) > 0, report
    assert not any(any(r) for r in report["reconnects"]), report


def test_a_redis_restart_mid_stream_loses_no_message(monoport, tls_args, tls_files, node_clients, tmp_path):
    """Redis with an append-only file, as a deployment that cares runs it: an emit it acknowledged
    survives its restart, and every instance's reader resumes after the last id it read. (Without
    persistence, what Redis acknowledged but no reader had read yet dies with it: the README says so.)"""
    redis = RedisServer(tmp_path, persist=True).start()

    def restart_redis(servers, url):
        redis.stop()
        time.sleep(1.0)  # the scenario: Redis stays down for a second
        redis.start()

    try:
        report = _stream_to_members(monoport, tls_args, tls_files, node_clients, redis, "30", restart_redis)
    finally:
        redis.stop()
    assert all(t == {"lost": 0, "duplicated": 0, "out_of_order": 0} for t in report["members"]), report
    assert report["readers_resumed"] == 3, report  # a1, b1 and p each lost Redis and came back


def _one_instance(monoport, tls_args, redis_url: str, recovery: str):
    return monoport(APP + tls_args + ["--redis", redis_url, "--recovery", recovery, "--log-level", "debug"])


def test_an_offset_redis_trimmed_away_gives_a_fresh_session(monoport, tls_args, tls_files, node_clients, redis_server):
    import redis as redis_py

    server = _one_instance(monoport, tls_args, redis_server.url, "30")
    member = node_clients(server.url, tls_files["ca"])
    first = member.joined()
    publisher = sio_client(server.url, tls_files["ca"], ["websocket"])
    try:
        assert publisher.call("to_room", ("r", 1), timeout=10) == "sent"
        wait_for(lambda: member.messages("room_message"), 10)
        member.send("drop")
        member.wait("disconnect")
        assert publisher.call("to_room", ("r", 2), timeout=10) == "sent"
        with redis_py.Redis.from_url(redis_server.url) as client:
            [stream] = list(client.scan_iter(match="*sio:stream"))
            client.xtrim(stream, maxlen=0)  # what MAXLEN ~ does to a client away too long on a busy stream
    finally:
        publisher.disconnect()
    again = _back(member)
    assert again["recovered"] is False and again["id"] != first["id"]
    assert "offset trimmed away; fresh session" in server.wait_log("offset trimmed away")


def _away_from(server, ca: str, node_clients) -> tuple[NodeClient, dict]:
    """A member that joined its room and then lost its transport; its first connect event."""
    member = node_clients(server.url, ca)
    first = member.joined()
    member.send("drop")
    member.wait("disconnect")
    return member, first


def _back(member: NodeClient) -> dict:
    member.send("back")
    return member.wait("connect", 2)


def test_through_redis_a_session_away_longer_than_the_duration_is_fresh(
        monoport, tls_args, tls_files, node_clients, redis_server):
    server = _one_instance(monoport, tls_args, redis_server.url, "1")
    member, first = _away_from(server, tls_files["ca"], node_clients)
    time.sleep(2.5)  # what the test proves: away longer than --recovery 1
    again = _back(member)
    assert again["recovered"] is False and again["id"] != first["id"]
    assert "unknown or expired pid" in server.log()


def test_through_redis_a_client_that_never_received_an_event_recovers(
        monoport, tls_args, tls_files, node_clients, redis_server):
    server = _one_instance(monoport, tls_args, redis_server.url, "30")
    member, first = _away_from(server, tls_files["ca"], node_clients)
    publisher = sio_client(server.url, tls_files["ca"], ["websocket"])
    try:
        assert publisher.call("to_room", ("r", "missed"), timeout=10) == "sent"
    finally:
        publisher.disconnect()
    again = _back(member)
    assert again["recovered"] is True and again["id"] == first["id"]
    wait_for(lambda: member.messages("room_message"), 10)
    assert member.messages("room_message")[0][0] == "missed"
