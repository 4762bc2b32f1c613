"""The demo chat shared between instances through a real redis-server (webapp.shared).

First :class:`webapp.shared.RedisShare` on its own (bounded history, members
once per nickname, stale entries dropped), then two real monoport instances
with ``REDIS_URL``: one chat whichever instance a client reached, and the
members of an instance killed with SIGKILL vanish from the others' lists.
"""

from __future__ import annotations

import signal

import pytest

from tests.conftest import wait_for
from tests.test_webapp import ChatClient
from tests.test_webapp_chat import Clock
from webapp.chat import HISTORY
from webapp.shared import RedisShare, prefix_for


@pytest.fixture
def wall() -> Clock:
    return Clock()


@pytest.fixture
def share(redis_url, wall) -> RedisShare:
    return RedisShare(redis_url, ttl=30, wall=wall)


def test_history_is_bounded_and_ids_are_one_counter(share):
    ids = [share.next_id() for _ in range(HISTORY + 5)]
    assert ids == list(range(1, HISTORY + 6))
    for n in ids:
        share.record("r", {"id": n, "text": f"m{n}", "nick": "Zoë"})
    history = share.history("r")
    assert [m["id"] for m in history] == ids[5:] and history[0]["nick"] == "Zoë"
    assert share.redis.llen("chat:history:r") == HISTORY  # trimmed in Redis, not only when read
    assert share.history("empty") == []


def test_members_are_listed_once_per_nickname_and_stale_entries_vanish(share, wall, redis_url):
    other = RedisShare(redis_url, ttl=30, wall=wall)  # a second instance
    share.enter("r", "tab1", "alice")
    other.enter("r", "tab2", "alice")
    other.enter("r", "b", "bob")
    assert share.members("r") == ["alice", "bob"]
    share.leave("r", "tab1", "alice")
    assert share.members("r") == ["alice", "bob"]  # the other tab is still there
    wall.now += 20
    assert share.refresh([("r", "tab2", "alice")]) == []  # the other instance keeps alice fresh
    wall.now += 20  # bob's instance died: nobody refreshed him
    assert share.members("r") == ["alice"]
    other.enter("r", "c", "carol")
    wall.now += 31
    assert share.refresh([("r", "tab2", "alice")]) == ["r"]  # carol went stale: the room is told
    assert share.members("r") == ["alice"]


def test_keys_are_scoped_to_the_cluster_when_monoport_names_it():
    assert prefix_for("prod") == "monoport:prod:chat:"
    assert prefix_for(None) == "chat:" and prefix_for("") == "chat:"


@pytest.fixture
def two_instances(monoport, tls_args, redis_url):
    env = {"REDIS_URL": redis_url, "CHAT_MEMBER_TTL": "3"}
    return [monoport(tls_args + ["--plain", "serve", "--instance-id", name], env=env) for name in ("a", "b")]


def test_two_instances_share_history_members_and_messages(two_instances, tls_files):
    a, b = two_instances
    alice = ChatClient(a.port, tls_files["ca"])
    bob = ChatClient(b.port, tls_files["ca"])
    alice_tab2 = ChatClient(b.port, tls_files["ca"])
    carol = ChatClient(a.port, tls_files["ca"])
    try:
        assert alice.join("shared", "alice")["ok"]
        assert alice.call("message", {"text": "from a"})["ok"]
        joined = bob.join("shared", "bob")
        assert [m["text"] for m in joined["history"]] == ["from a"]  # written on a, read on b
        assert joined["members"] == ["alice", "bob"]
        wait_for(lambda: {"room": "shared", "members": ["alice", "bob"]} in alice.events["members"])
        assert alice_tab2.join("shared", "alice")["members"] == ["alice", "bob"]  # one alice
        sent = bob.call("message", {"text": "from b"})
        wait_for(lambda: alice.texts() == ["from a", "from b"])
        assert sent["id"] > alice.events["message"][0]["id"]  # one order across instances
        assert carol.join("shared", "carol")["members"] == ["alice", "bob", "carol"]
        wait_for(lambda: bob.members() == ["alice", "bob", "carol"])
        a.stop(signal.SIGKILL)  # no goodbye: carol and the first alice tab vanish when stale
        wait_for(lambda: bob.members() == ["alice", "bob"], timeout=20, what=lambda: bob.events["members"][-3:])
        assert [m["text"] for m in bob.join("shared", "bob")["history"]] == ["from a", "from b"]
    finally:
        for client in (alice, bob, alice_tab2, carol):
            client.close()


def test_redis_down_refuses_with_unavailable_and_no_traceback(monoport, tls_args, tls_files, redis_server):
    server = monoport(tls_args + ["--plain", "serve"], env={"REDIS_URL": redis_server.url})
    client = ChatClient(server.port, tls_files["ca"])
    try:
        assert client.join("down", "dana")["ok"]
        redis_server.stop()
        refused = client.call("message", {"text": "anyone?"})
        assert refused["ok"] is False and refused["code"] == "unavailable"
        wait_for(lambda: client.errors() == ["unavailable"])
        assert client.sio.connected
        server.wait_log("chat: Redis error on message")
    finally:
        client.close()
