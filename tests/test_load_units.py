"""The pure rules of admission by load and of the event rate limit."""

from __future__ import annotations

from monoport.eventrate import EventLimiter, TokenBucket, event_namespace
from monoport.load import FALL, RISE, Hysteresis, least_loaded_key
from monoport.peers import RISE as PEER_RISE
from monoport.peers import PeerTable


def test_lagging_needs_a_sustained_run_over_the_threshold_and_a_longer_one_under_half_of_it():
    switch = Hysteresis(0.05)
    for _ in range(RISE - 1):
        assert switch.observe(0.2) is False
    assert switch.observe(0.01) is False  # a quiet sample restarts the count
    assert [switch.observe(0.2) for _ in range(RISE)][-1] is True
    for _ in range(FALL - 1):
        assert switch.observe(0.01) is True
    assert switch.observe(0.04) is True  # under the threshold but over half of it: still lagging
    assert [switch.observe(0.01) for _ in range(FALL)][-1] is False
    assert switch.turned_on == 1


def test_a_load_that_hovers_around_the_threshold_does_not_flap():
    switch = Hysteresis(0.05)
    states = [switch.observe(0.08 if i % 2 else 0.03) for i in range(200)]
    assert not any(states)  # never RISE samples in a row above
    switch = Hysteresis(0.05)
    states = [switch.observe(0.2 if i % 4 else 0.03) for i in range(400)]  # a steady heavy load, jittery
    assert switch.turned_on == 1 and states[-1]


def test_the_least_loaded_peer_is_the_one_with_least_lag_then_fewest_requests_then_most_room():
    keys = {"slow": least_loaded_key(0.030, 0, 10), "busy": least_loaded_key(0.0001, 5, 10),
            "roomy": least_loaded_key(0.0002, 0, 90), "idle": least_loaded_key(0.0, 0, 10)}
    assert sorted(keys, key=keys.get) == ["roomy", "idle", "busy", "slow"]


def test_lagging_peers_come_last_for_capacity_and_not_at_all_for_load():
    table = PeerTable("me", "/monoport/health", dial=lambda *a: None, cluster="c")
    for port, (pid, lagging) in enumerate([("hot", True), ("cool", False)], start=7001):
        peer = table.add(("127.0.0.1", port))
        for _ in range(PEER_RISE):
            table.record(peer, {"id": pid, "cluster": "c", "conns": 0, "max_conns": 9, "lag": 0.2 if lagging else 0,
                                "lagging": lagging, "in_app": 3 if lagging else 0}, None)
    assert [p.id for p in table.candidates()] == ["cool", "hot"]
    assert [p.id for p in table.candidates(lagging=False)] == ["cool"]


def test_a_token_bucket_passes_a_burst_then_its_rate():
    bucket = TokenBucket(10, 10, now=0.0)
    passed = 0
    for _ in range(50):
        if bucket.available(0.0) >= 1:
            bucket.take(0.0)
            passed += 1
    assert passed == 10
    assert bucket.available(0.5) == 5 and bucket.full(1.0)


def test_the_limiter_counts_each_session_and_each_client_across_its_sessions():
    now = [0.0]
    limiter = EventLimiter(5, clock=lambda: now[0])
    assert [limiter.allow("s1", "10.0.0.1") for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.allow("s2", "10.0.0.1") is False  # same client, other session: the client's budget is spent
    assert limiter.allow("s3", "10.0.0.2") is True  # another client is unaffected
    now[0] = 1.0
    assert sum(limiter.allow("s2", "10.0.0.1") for _ in range(10)) == 5  # refilled at 5/s
    assert limiter.dropped == 2 + 1 + 5
    assert limiter.should_notice("s1") and not limiter.should_notice("s1")
    limiter.forget("s1")
    assert "s1" not in limiter.sessions


def test_event_namespace_is_read_from_event_packets_only():
    assert event_namespace('2["x"]') == "/"
    assert event_namespace('21["x"]') == "/"  # with an ack id
    assert event_namespace('2/chat,["x"]') == "/chat"
    assert event_namespace('2/chat,7["x"]') == "/chat"
    assert event_namespace('51-["x",{"_placeholder":true,"num":0}]') == "/"
    assert event_namespace('51-/chat,["x",{"_placeholder":true,"num":0}]') == "/chat"
    for other in ("0", '0{"token":1}', "1", '3["ok"]', "4{}", b"\x00binary", "", None):
        assert event_namespace(other) is None
