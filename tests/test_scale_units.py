"""The pure parts of scale-out: health answers, the peer table's rules, full-answer detection, options."""

from __future__ import annotations

import pytest

from monoport.wire import proxyproto
from monoport.forwarding import is_full_answer as _is_full_answer
from monoport.config_sources import from_sources
from monoport.errors import ConfigError
from monoport.peer_health import parse_health
from monoport.peers import FALL, RISE, PeerTable


def test_parse_health_takes_a_200_json_object_with_an_id():
    answer = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"id": "b", "conns": 3, "max_conns": 9}'
    assert parse_health(answer)["conns"] == 3
    for bad in (b"HTTP/1.1 404 Not Found\r\n\r\n{}", b'HTTP/1.1 200 OK\r\n\r\n{"conns": 1}',
                b"HTTP/1.1 200 OK\r\n\r\nnot json", b"", b"HTTP/1.1 200 OK"):
        with pytest.raises(ValueError):
            parse_health(bad)


def test_parse_health_takes_a_draining_instances_503_and_no_other_503():
    draining = b'HTTP/1.1 503 Service Unavailable\r\n\r\n{"id": "b", "conns": 3, "draining": true}'
    assert parse_health(draining)["draining"] is True
    for bad in (b'HTTP/1.1 503 Service Unavailable\r\n\r\n{"id": "b", "draining": false}',
                b"HTTP/1.1 503 Service Unavailable\r\n\r\nBusy"):
        with pytest.raises(ValueError):
            parse_health(bad)


CLUSTER = "shop"


def _table() -> PeerTable:
    return PeerTable("me", "/monoport/health", dial=lambda *a: None, cluster=CLUSTER)


def test_a_peer_needs_two_passes_to_rise_and_two_failures_to_fall():
    table = _table()
    peer = table.add(("127.0.0.1", 7001), static=True)
    info = {"id": "b", "cluster": CLUSTER, "conns": 1, "max_conns": 4, "draining": False}
    for _ in range(RISE - 1):
        table.record(peer, info, None)
    assert not peer.up and table.candidates() == []
    table.record(peer, info, None)
    assert peer.up and table.candidates() == [peer] and table.by_id("b") is peer
    table.record(peer, None, "timeout")
    assert peer.up  # one failure is not enough
    for _ in range(FALL - 1):
        table.record(peer, None, "timeout")
    assert not peer.up and table.by_id("b") is None


def test_candidates_are_ordered_by_free_capacity_and_skip_full_draining_and_self():
    table = _table()
    peers = {}
    for port, (pid, conns, draining) in enumerate([("b", 1, False), ("c", 0, False), ("d", 4, False),
                                                  ("e", 0, True), ("me", 0, False)], start=7001):
        peer = peers[pid] = table.add(("127.0.0.1", port))
        for _ in range(RISE):
            table.record(peer, {"id": pid, "cluster": CLUSTER, "conns": conns, "max_conns": 4,
                                "draining": draining}, None)
    assert peers["me"].is_self and not peers["me"].up
    assert [p.id for p in table.candidates()] == ["c", "b"]
    peers["c"].recent = 4  # forwarded since its last answer: counts against it at once
    assert [p.id for p in table.candidates()] == ["b"]
    table.mark_down(peers["b"], "refused")
    assert table.candidates() == []


def test_a_peer_of_another_cluster_or_of_none_never_rises_and_is_warned_about_once(caplog):
    table = _table()
    peer = table.add(("127.0.0.1", 7001), static=True)
    for theirs in ("chat", None):
        info = {"id": "x", "conns": 0, "max_conns": 4, "draining": False}
        if theirs:
            info["cluster"] = theirs
        for _ in range(RISE + 3):
            table.record(peer, info, None)
        assert peer.stranger and not peer.up and table.candidates() == [] and table.owner("x") is None
    warnings = [r for r in caplog.records if "is instance x of cluster" in r.getMessage()]
    assert len(warnings) == 2  # one per stranger (two cluster names), not one per poll
    for _ in range(RISE):  # the address now answers as one of ours (redeployed): usable again
        table.record(peer, {"id": "x", "cluster": CLUSTER, "conns": 0, "max_conns": 4}, None)
    assert peer.up and not peer.stranger and table.owner("x") is peer


def test_a_sibling_is_a_session_owner_before_its_first_health_answer_and_after_a_failure():
    table = _table()
    sibling = table.add(("127.0.0.1", 7001), peer_id="w1", sibling=True)
    table.add(("127.0.0.1", 7002), peer_id="w2")  # discovered, not yet answered
    assert table.owner("w1") is sibling and not sibling.up
    assert table.owner("w2") is None  # discovered but not confirmed: not forwarded to
    assert table.candidates() == []  # spill-over waits for health, siblings too
    table.mark_down(sibling, "restarting")
    assert table.owner("w1") is sibling  # its socket is the master's: the backlog holds the request
    table.forget_missing([])
    assert ("127.0.0.1", 7001) in table.peers and ("127.0.0.1", 7002) not in table.peers


def test_a_discovered_peer_owns_its_sessions_from_its_first_health_answer_and_is_waited_for_before():
    table = _table()
    peer = table.add(("127.0.0.1", 7001), peer_id="b")
    assert table.owner("b") is None and table.pending("b")  # known, not answered yet: worth waiting for
    table.record(peer, {"id": "b", "cluster": CLUSTER, "conns": 0, "max_conns": 4}, None)
    assert not peer.up and table.owner("b") is peer  # one answer as one of ours: its sessions go there
    assert table.candidates() == []  # spill-over still waits for RISE answers
    table.record(peer, None, "timeout")
    assert table.owner("b") is None and not table.pending("b")  # it failed: nothing to wait for
    assert not table.pending("nobody")


def test_a_starting_peer_gets_affinity_forwards_but_no_spill_over():
    table = _table()
    peer = table.add(("127.0.0.1", 7001), static=True)
    for _ in range(RISE):
        table.record(peer, {"id": "b", "cluster": CLUSTER, "conns": 0, "max_conns": 4, "ready": False}, None)
    assert peer.up and not peer.ready and table.candidates() == [] and table.owner("b") is peer


def test_parse_health_takes_a_starting_instances_503():
    starting = b'HTTP/1.1 503 Service Unavailable\r\n\r\n{"id": "b", "draining": false, "ready": false}'
    assert parse_health(starting)["ready"] is False


def test_the_cluster_travels_in_the_proxy_header_a_peer_forwards():
    built = proxyproto.build_v2(("203.0.113.7", 50000), ("10.0.0.1", 8443), forwarded_by="a1", cluster="shop")
    header, consumed = proxyproto.parse(built + b"GET / HTTP/1.1\r\n")
    assert consumed == len(built) and header.cluster == "shop" and header.forwarded_by == "a1"
    header, _ = proxyproto.parse(proxyproto.build_v2(("203.0.113.7", 1), ("10.0.0.1", 2), forwarded_by="a1"))
    assert header.cluster is None


def test_the_cluster_defaults_to_the_app_spec_and_can_be_named():
    config, _ = from_sources(["--app", "shop.wsgi:app"], {})
    assert config.cluster == "" and config.cluster_name == "shop.wsgi:app"
    assert from_sources([], {})[0].cluster_name == "webapp"  # the demo app
    config, _ = from_sources(["--app", "shop.wsgi:app"], {"MONOPORT_CLUSTER": "shop-staging"})
    assert config.cluster_name == "shop-staging"
    assert from_sources(["--cluster", "prod"], {"MONOPORT_CLUSTER": "x"})[0].cluster_name == "prod"
    for bad in ("", "a b", "x" * 65, "shop/1"):
        with pytest.raises(ConfigError) as info:
            from_sources(["--cluster", bad], {})
        assert info.value.flag == "--cluster"


def test_discovered_peers_are_forgotten_static_ones_kept():
    table = _table()
    table.add(("127.0.0.1", 7001), static=True)
    table.add(("127.0.0.1", 7002), peer_id="c")
    table.forget_missing([])
    assert list(table.peers) == [("127.0.0.1", 7001)]


def test_full_answer_is_only_the_marked_503():
    assert _is_full_answer(b"HTTP/1.1 503 Service Unavailable\r\nX-Monoport-Full: b\r\n\r\n")
    assert not _is_full_answer(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n")  # the app's own
    assert not _is_full_answer(b"HTTP/1.1 200 OK\r\nX-Monoport-Full: b\r\n\r\n")


def test_local_header_parses_as_not_proxied():
    header, consumed = proxyproto.parse(proxyproto.build_v2_local() + b"GET")
    assert not header.proxied and consumed == 16


def test_scale_options_parse_and_refuse_bad_values():
    config, _ = from_sources(["--max-conns", "5", "--queue-timeout", "0", "--peer", "10.0.0.2:7443",
                              "--peer", "10.0.0.3:7443", "--peer-bind", "10.0.0.1:7443", "-w", "3"],
                             {"REDIS_URL": "redis://10.0.0.9:6379/0"})
    assert config.max_conns == 5 and config.queue_timeout == 0.0 and config.workers == 3
    assert config.peer == (("10.0.0.2", 7443), ("10.0.0.3", 7443)) and config.peer_bind == ("10.0.0.1", 7443)
    for argv, flag in ((["--max-conns", "0"], "--max-conns"), (["--redis", "http://x"], "--redis"),
                       (["--queue-timeout", "-1"], "--queue-timeout")):
        with pytest.raises(ConfigError) as info:
            from_sources(argv, {})
        assert info.value.flag == flag
