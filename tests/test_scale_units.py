"""The pure parts of scale-out: health answers, the peer table's rules, full-answer detection, options."""

from __future__ import annotations

import pytest

from monoport import proxyproto
from monoport.balancer import _is_full_answer
from monoport.config import from_sources
from monoport.errors import ConfigError
from monoport.peers import FALL, RISE, PeerTable, parse_health


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


def _table() -> PeerTable:
    return PeerTable("me", "/monoport/health", dial=lambda *a: None)


def test_a_peer_needs_two_passes_to_rise_and_two_failures_to_fall():
    table = _table()
    peer = table.add(("127.0.0.1", 7001), static=True)
    info = {"id": "b", "conns": 1, "max_conns": 4, "draining": False}
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
            table.record(peer, {"id": pid, "conns": conns, "max_conns": 4, "draining": draining}, None)
    assert peers["me"].is_self and not peers["me"].up
    assert [p.id for p in table.candidates()] == ["c", "b"]
    peers["c"].recent = 4  # forwarded since its last answer: counts against it at once
    assert [p.id for p in table.candidates()] == ["b"]
    table.mark_down(peers["b"], "refused")
    assert table.candidates() == []


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
