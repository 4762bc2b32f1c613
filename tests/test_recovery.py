"""Socket.IO connection state recovery on one instance (--recovery, in memory).

The npm socket.io-client (4.8, the browser's client, in Node.js) loses its
transport, events are sent to its room while it is away, and it comes back:
same id, ``socket.recovered`` true, the missed events before ``connect``, its
rooms and session as they were. A deliberate disconnect, an expired or bad
pid, a trimmed offset: a fresh session. python-socketio's client sees the
offset as an extra last argument (the README's caveat), and nothing at all
with recovery off.
"""

from __future__ import annotations

import time

import pytest
import socketio

from monoport.recovery_manager import Refused, Session
from monoport.recovery_memory import MemoryStore
from tests.clients import https_session, serialized_tls_context, sio_client
from tests.cluster import APP
from tests.conftest import wait_for
from tests.node_client import NodeClient

FSIO_APP = ["--app", "tests.apps.fsio_app:app"]


def _to_room(url: str, ca: str, *items, room: str = "r") -> None:
    publisher = sio_client(url, ca, ["websocket"])
    try:
        for item in items:
            assert publisher.call("to_room", (room, item), timeout=10) == "sent"
    finally:
        publisher.disconnect()


def _away(member: NodeClient, disconnects: int = 1) -> None:
    member.send("drop")
    member.wait("disconnect", disconnects)


def _no_client_in_default_namespace(server, ca: str) -> bool:
    """The server has seen every client's transport go (its stats list nobody in ``/``)."""
    with https_session(ca) as http:
        return "/" not in http.get(server.url + "/monoport/stats.json", timeout=5).json()["socketio"]["namespaces"]


def _back_after_missing(member: NodeClient, server, ca: str, *items) -> dict:
    """Drop ``member``'s transport, send ``items`` to its room, bring it back: its connect event."""
    _away(member)
    wait_for(lambda: _no_client_in_default_namespace(server, ca), 10, what="the server to see the transport go")
    _to_room(server.url, ca, *items)
    member.send("back")
    return member.wait("connect", 2)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_npm_client_gets_id_rooms_session_and_missed_events_back_after_losing_its_transport(
        monoport, tls_args, tls_files, node_clients, transport):
    server = monoport(APP + tls_args + ["--recovery", "30", "--log-level", "debug"])
    member = node_clients(server.url, tls_files["ca"], transport=transport)
    first = member.joined()
    member.emit("note", "kept")
    member.wait("ack")
    _to_room(server.url, tls_files["ca"], 1)
    wait_for(lambda: member.messages("room_message"), 10)
    again = _back_after_missing(member, server, tls_files["ca"], 2, 3)
    assert again["recovered"] is True and again["id"] == first["id"]
    # the missed events came before "connect", each with its offset last
    events = [e for e in member.events if e["event"] in ("connect", "message")]
    assert [e.get("args", [None])[0] for e in events[-3:]] == [2, 3, None]
    assert all(isinstance(args[-1], str) for args in member.messages("room_message"))
    # still in its room without joining again, session as it was
    _to_room(server.url, tls_files["ca"], 4)
    wait_for(lambda: len(member.messages("room_message")) == 4, 10)
    assert [args[0] for args in member.messages("room_message")] == [1, 2, 3, 4]
    assert len(member.of("joined")) == 1
    member.emit("whoami")
    answer = member.wait("ack", 2)["answer"][0]
    assert answer["note"] == "kept"
    assert "recovered in /: 2 packet(s) replayed" in server.log()


def test_a_client_that_never_received_an_event_gets_what_it_missed(monoport, tls_args, tls_files, node_clients):
    server = monoport(APP + tls_args + ["--recovery", "30"])
    member = node_clients(server.url, tls_files["ca"])
    first = member.joined()
    again = _back_after_missing(member, server, tls_files["ca"], "a", "b")
    assert again["recovered"] is True and again["id"] == first["id"]
    wait_for(lambda: len(member.messages("room_message")) == 2, 10)
    assert [args[0] for args in member.messages("room_message")] == ["a", "b"]


def test_deliberate_disconnects_by_either_side_keep_nothing(monoport, tls_args, tls_files, node_clients):
    server = monoport(APP + tls_args + ["--recovery", "30"])
    member = node_clients(server.url, tls_files["ca"])
    first = member.joined()
    member.send("leave")  # the client's own socket.disconnect(), then connect()
    again = member.wait("connect", 2)
    assert again["recovered"] is False and again["id"] != first["id"]
    member.joined(2)
    member.emit("kick")  # the server's sio.disconnect(sid)
    assert member.wait("disconnect", 2)["reason"] == "io server disconnect"
    member.send("back")
    third = member.wait("connect", 3)
    assert third["recovered"] is False and third["id"] not in (first["id"], again["id"])


def test_draining_ends_sessions_as_a_lost_transport_so_they_are_kept(monoport, tls_args, tls_files, node_clients):
    server = monoport(APP + tls_args + ["--recovery", "30", "--log-level", "debug"])
    member = node_clients(server.url, tls_files["ca"])
    sid = member.joined()["id"]
    assert server.stop() == 0
    assert f"session {sid} in / kept for recovery (transport close)" in server.log()


def test_a_session_away_longer_than_the_duration_is_fresh(monoport, tls_args, tls_files, node_clients):
    server = monoport(APP + tls_args + ["--recovery", "1"])
    member = node_clients(server.url, tls_files["ca"])
    first = member.joined()
    _away(member)
    time.sleep(2.5)  # what the test proves: away longer than --recovery 1
    member.send("back")
    again = member.wait("connect", 2)
    assert again["recovered"] is False and again["id"] != first["id"]


def test_flask_socketio_app_recovers_too(monoport, tls_args, tls_files, node_clients):
    server = monoport(FSIO_APP + tls_args + ["--recovery", "30"])
    member = node_clients(server.url, tls_files["ca"])
    first = member.joined()
    again = _back_after_missing(member, server, tls_files["ca"], "while away")
    assert again["recovered"] is True and again["id"] == first["id"]
    wait_for(lambda: member.messages("room_message"), 10)
    assert member.messages("room_message")[0][0] == "while away"


def test_recoveries_show_in_stats_metrics_and_the_access_log(monoport, tls_args, tls_files, node_clients, tmp_path):
    access = tmp_path / "access.log"
    server = monoport(APP + tls_args + ["--recovery", "30", "--access-log", str(access)])
    member = node_clients(server.url, tls_files["ca"])
    member.joined()
    again = _back_after_missing(member, server, tls_files["ca"], 1, 2)
    assert again["recovered"] is True
    _connect_with_auth(server.url, tls_files["ca"], {"pid": "nope", "offset": "x-1"}).disconnect()
    http = https_session(tls_files["ca"])
    rec = http.get(server.url + "/monoport/stats.json", timeout=5).json()["extra"]["recovery"]
    assert (rec["recovered"], rec["replayed"], rec["failed"]) == (1, 2, 1), rec
    assert rec["failures"] == {"unknown, expired or already taken pid": 1}
    assert "Socket.IO recovery" in http.get(server.url + "/monoport/stats", timeout=5).text
    metrics = http.get(server.url + "/monoport/metrics", timeout=5).text
    assert "monoport_socketio_recovered_total 1.0" in metrics
    assert "monoport_socketio_replayed_packets_total 2.0" in metrics
    assert 'monoport_socketio_recovery_failed_total{reason="unknown, expired or already taken pid"} 1.0' in metrics
    member.close()  # its recovered WebSocket ends: its conn line is written
    wait_for(lambda: "Socket.IO session recovered" in access.read_text(), 10)
    [line] = [line for line in access.read_text().splitlines() if "recovered" in line]
    assert " conn " in line and " wss " in line


@pytest.mark.parametrize("auth", [
    {"pid": "no-such-pid", "offset": "0-0"},
    {"pid": 12, "offset": "0-0"},
    {"pid": "x" * 5000},
    {"pid": "no-such-pid", "offset": ["not", "a", "string"]},
])
def test_bad_recovery_input_gives_a_fresh_session_and_one_debug_line(monoport, tls_args, tls_files, auth):
    server = monoport(APP + tls_args + ["--recovery", "30", "--log-level", "debug"])
    client = _connect_with_auth(server.url, tls_files["ca"], auth)
    try:
        assert client.call("echo", "still served", timeout=10) == "still served"
    finally:
        client.disconnect()
    log = server.wait_log("recovery refused")
    assert log.count("recovery refused") == 1


def _connect_with_auth(url: str, ca: str, auth: dict) -> socketio.Client:
    client = socketio.Client(http_session=https_session(ca), reconnection=False,
                             websocket_extra_options={"sslopt": {"context": serialized_tls_context(ca)}})
    client.connect(url, transports=["websocket"], auth=auth, wait_timeout=10)
    return client


@pytest.mark.parametrize("recovery", [None, "30"])
def test_python_client_sees_the_offset_as_an_extra_last_argument_only_with_recovery(
        monoport, tls_args, tls_files, recovery):
    server = monoport(APP + tls_args + (["--recovery", recovery] if recovery else []))
    client = sio_client(server.url, tls_files["ca"], ["websocket"])
    got: list[tuple] = []
    client.on("shouted", lambda *args: got.append(args))  # the README: take *args with --recovery
    try:
        assert client.call("shout", "hey", timeout=10) == "ok"
        wait_for(lambda: got, 10)
    finally:
        client.disconnect()
    if recovery:
        assert len(got[0]) == 2 and got[0][0] == "hey" and isinstance(got[0][1], str)
    else:
        assert got == [("hey",)]


# -- the in-memory store, pure ----------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _session(store: MemoryStore, namespace: str = "/", rooms=("s1", "r")) -> Session:
    return Session("pid1", "s1", namespace, list(rooms), start=store.position())


def test_memory_store_replays_what_the_session_would_have_received():
    store = MemoryStore(10)
    session = _session(store)
    first = store.append("/", "r", None, ["m", 1])
    store.append("/", "other", None, ["m", 2])
    store.append("/", None, None, ["m", 3])
    store.append("/", "r", "s1", ["m", 4])  # skip_sid: the sender itself
    store.append("/chat", None, None, ["m", 5])
    store.append("/", "s1", None, ["direct", 6])
    assert [args for _, args in store.missed(session, session.start)] == [["m", 1], ["m", 3], ["direct", 6]]
    assert [args for _, args in store.missed(session, first)] == [["m", 3], ["direct", 6]]


def test_memory_store_refuses_trimmed_foreign_malformed_and_future_offsets():
    clock = FakeClock()
    store = MemoryStore(10, clock=clock)
    old = store.append("/", None, None, ["m", 1])
    clock.now += 11
    store.append("/", None, None, ["m", 2])  # drops the first, older than the duration
    for bad in (old.replace("-1", "-0"), "deadbeef-1", "garbage", f"{store.epoch}-99", f"{store.epoch}-x"):
        with pytest.raises(Refused):
            store.check_offset(bad)
    store.check_offset(store.position())


def test_memory_store_sessions_are_taken_once_for_their_namespace_until_they_expire():
    clock = FakeClock()
    store = MemoryStore(10, clock=clock)
    store.keep(_session(store), "t")
    with pytest.raises(Refused, match="namespace"):
        store.take("pid1", "/chat", "t")
    store.keep(_session(store), "t")
    assert store.take("pid1", "/", "t").sid == "s1"
    with pytest.raises(Refused):
        store.take("pid1", "/", "t")  # already taken: in use
    store.keep(_session(store), "t")
    clock.now += 11
    with pytest.raises(Refused):
        store.take("pid1", "/", "t")


def test_recovery_without_redis_refuses_an_app_that_brought_a_message_queue():
    from monoport.errors import ConfigError
    from monoport.recovery import install

    sio = socketio.Server(async_mode="gevent", client_manager=socketio.RedisManager("redis://127.0.0.1:1/0"))
    with pytest.raises(ConfigError, match="needs --redis"):
        install(sio, 10)
    install(socketio.Server(async_mode="gevent"), 10)  # the in-process manager: fine
