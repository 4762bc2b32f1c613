"""Spill by load (--max-lag) and per-client fairness (--max-events-per-second), on real instances."""

from __future__ import annotations

import http.client
import statistics
import threading
import time

from tests.clients import https_session, sio_client
from tests.cluster import APP, start_cluster
from tests.conftest import wait_for

#: the CPU-heavy request that makes an instance lag: this many ms of busy work, back to back
BURN_MS = 150


class Burner(threading.Thread):
    """One keep-alive connection asking an instance for CPU-heavy work back to back (it stays there)."""

    def __init__(self, port: int, ctx) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
        self.stopping = threading.Event()
        self.served = 0

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.conn.request("GET", f"/burn?ms={BURN_MS}")
                assert self.conn.getresponse().read() == b"burnt"
                self.served += 1
        finally:
            self.conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


def _new_sessions(url: str, ca: str, n: int) -> tuple[list[str], list[float]]:
    owners, seconds = [], []
    for _ in range(n):
        started = time.monotonic()
        client = sio_client(url, ca, ["websocket"])
        seconds.append(time.monotonic() - started)
        owners.append(client.eio.sid.partition(".")[0])
        client.disconnect()
    return owners, seconds


def test_a_lagging_instance_sends_new_sessions_to_its_idle_peer_and_keeps_serving_its_own(
        redis_url, monoport, tls_args, tls_files, client_ctx):
    a, b = start_cluster(monoport, redis_url, ["a", "b"], tls_args + ["--max-lag", "0.05"])
    ca = tls_files["ca"]
    owners, unloaded = _new_sessions(a.url, ca, 8)
    assert set(owners) == {"a"}  # not lagging: served here
    existing = sio_client(a.url, ca, ["websocket"])
    burner = Burner(a.port, client_ctx)
    burner.start()
    try:
        a.wait_log("load: event loop lagging", timeout=20)
        owners, loaded = _new_sessions(a.url, ca, 8)
        assert set(owners) == {"b"}, a.log()  # none lost, every one placed on the idle peer
        assert existing.call("echo", "still here", timeout=20) == "still here"  # its session stays on a
        assert existing.call("whoami", timeout=20)["instance"] == "a"
        time.sleep(2)  # a steady load: the verdict holds, no back-and-forth
        assert a.log().count("load: event loop lagging") == 1 and "lag back under" not in a.log()
        health = https_session(ca).get(a.url + "/monoport/health", timeout=20).json()
        assert health["lagging"] is True and health["lag"] > 0.05
        assert burner.served > 0
    finally:
        burner.stop()
        existing.disconnect()
    a.wait_log("load: lag back under", timeout=20)
    owners, _ = _new_sessions(a.url, ca, 3)
    assert set(owners) == {"a"}
    print(f"\nnew-session connect time: unloaded median {statistics.median(unloaded) * 1000:.0f} ms, "
          f"max {max(unloaded) * 1000:.0f} ms; with a lagging (burning {BURN_MS} ms a request) "
          f"median {statistics.median(loaded) * 1000:.0f} ms, max {max(loaded) * 1000:.0f} ms")


def test_a_flooding_client_is_limited_while_a_normal_client_on_the_same_instance_is_not(
        monoport, tls_args, tls_files):
    server = monoport(APP + tls_args + ["--max-events-per-second", "20"])
    ca = tls_files["ca"]
    limited: list = []
    flooder = sio_client(server.url, ca, ["websocket"], auth={"user": "flood"})
    flooder.on("monoport:rate_limited", lambda data: limited.append(data))
    normal = sio_client(server.url, ca, ["websocket"], auth={"user": "normal"})  # same address, another user
    try:
        for n in range(300):
            flooder.emit("tick", n)
        for n in range(20):  # 10 a second, under the limit, while the flood is being dropped
            normal.emit("tick", n)
            time.sleep(0.1)
        assert wait_for(lambda: normal.call("ticks", timeout=10) == 20, timeout=10)
        wait_for(lambda: limited, timeout=10)
        assert limited[0] == {"limit": 20, "per": "second"}
        time.sleep(1.2)  # the flooder's bucket refills: its next events pass again
        counted = flooder.call("ticks", timeout=10)
        assert 20 <= counted < 150, counted  # a burst of 20 plus the refill while it flooded, not 300
        snap = https_session(ca).get(server.url + "/monoport/stats.json", timeout=10).json()
        assert snap["errors"]["event_rate_limited"] == 300 - counted
    finally:
        flooder.disconnect()
        normal.disconnect()
    assert server.log().count("over --max-events-per-second 20") <= 3  # a line a second, not one per event
