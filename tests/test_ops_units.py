"""Stats, its views and the access rule without sockets: the API other modules call."""

from __future__ import annotations

import base64
import time

from prometheus_client.parser import text_string_to_metric_families

from monoport.ops import metrics, statspage
from monoport.ops.admin import credentials_match
from monoport.wire.trust import is_loopback
from monoport.ops.stats import Histogram, Stats


class FakeConn:
    """The attributes Stats reads from a Connection."""

    def __init__(self, kind: str = "unknown") -> None:
        self.stats = None
        self._kind = kind
        self.started = time.monotonic()
        self.tls = None
        self.secure = False
        self.client = ("198.51.100.9", 4000)
        self.requests = 0
        self.bytes_in = self.bytes_out = 0
        self.served_by = None
        self.forwarded_by = None
        self.termination = "client_closed"

    @property
    def kind(self) -> str:
        return self._kind

    @kind.setter
    def kind(self, value: str) -> None:
        old, self._kind = self._kind, value
        self.stats.kind_changed(self, old, value)


def test_live_counts_follow_kind_changes_and_forwarded_out_connections_count_at_the_peer():
    stats = Stats("ab12", "9.9", max_conns=10)
    a, b = FakeConn(), FakeConn()
    stats.connection_opened(a)
    stats.connection_opened(b)
    a.kind, b.kind = "tls", "http"
    a.kind = "https"
    assert stats.live["https"] == 1 and stats.live["http"] == 1 and stats.live["unknown"] == 0
    assert stats.sniffed == {"tls": 1, "https": 1, "http": 1}
    stats.forwarded_out(b, "cd34")
    assert stats.health() == {"id": "ab12", "cluster": "", "conns": 1, "max_conns": 10, "draining": False,
                              "ready": True, "lag": 0.0, "lagging": False, "in_app": 0, "version": "9.9"}
    b.bytes_out = 500
    stats.connection_closed(b)
    stats.connection_closed(b)  # idempotent
    snap = stats.snapshot()
    assert snap["conns"] == 1 and snap["connections"]["forwarded_total"] == {"in": 0, "out": 1}
    assert snap["bytes"]["out"] == 500 and snap["connections"]["terminations"]["client_closed"] == 1


def test_peers_show_in_the_page_and_the_metrics():
    stats = Stats("ab12", "9.9")
    stats.set_peer("cd34", address="10.0.0.2:9000", healthy=True, conns=3, max_conns=100)
    stats.set_peer("ef56", address="10.0.0.3:9000", up=False, conns=None)  # the balancer's own key
    stats.sources["balancer"] = lambda: {"queued": 2}
    snap = stats.snapshot()
    assert snap["extra"] == {"balancer": {"queued": 2}}
    page = statspage.render(snap).decode()
    assert 'class="up"><td>cd34</td><td>UP</td>' in page and '<td>ef56</td><td>DOWN</td>' in page
    families = {f.name: f for f in text_string_to_metric_families(metrics.render(snap).decode())}
    up = {s.labels["peer"]: s.value for s in families["monoport_peer_up"].samples}
    assert up == {"cd34": 1.0, "ef56": 0.0}
    assert [s.value for s in families["monoport_peer_connections"].samples] == [3.0]


def test_the_page_escapes_what_clients_control():
    stats = Stats("ab12", "9.9")
    conn = FakeConn("https")
    stats.connection_opened(conn)
    conn.tls = {"version": "TLSv1.3", "sni": "<script>alert(1)</script>"}
    page = statspage.render(stats.snapshot()).decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_histogram_buckets_are_cumulative():
    hist = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        hist.observe(value)
    assert hist.snapshot() == {"buckets": [[0.1, 2], [1.0, 3], ["+Inf", 4]], "sum": 3.65, "count": 4}


def test_basic_credentials_and_loopback():
    good = "Basic " + base64.b64encode(b"ops:s3:cret").decode()
    assert credentials_match(good, "ops:s3:cret")
    assert not credentials_match(good, "ops:s3:cre")
    assert not credentials_match("Basic !!!notbase64", "ops:x")
    assert not credentials_match("Bearer abc", "ops:x") and not credentials_match(None, "ops:x")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.2")
    assert not is_loopback("203.0.113.7") and not is_loopback("") and not is_loopback("garbage")


def test_event_loop_lag_probe_sees_a_blocked_hub():
    import gevent

    stats = Stats("ab12", "9.9")
    probe = gevent.spawn(stats.measure_lag, gevent.sleep, 0, 0.05)  # almost always inside its timed sleep
    try:
        gevent.sleep(0.02)
        time.sleep(0.3)  # a CPU-bound handler: nothing else runs meanwhile
        gevent.sleep(0.1)
    finally:
        probe.kill()
    assert stats.lag_max >= 0.2 and stats.snapshot()["event_loop"]["lag_max"] >= 0.2
