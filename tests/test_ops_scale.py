"""Stats and access log across instances: forwarded in/out, peers' health, server_full."""

from __future__ import annotations

import json
import signal

from tests.clients import https_session
from tests.cluster import held_connection, https_get, start_cluster
from tests.conftest import wait_for


def access_lines(server) -> list[dict]:
    """The JSON access-log lines (--access-log -) in a server's captured output."""
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def test_forwarded_connections_peers_and_server_full_in_stats_and_access_log(monoport, redis_url, tls_args,
                                                                             tls_files, client_ctx):
    a, b = start_cluster(monoport, redis_url, ["a", "b"], tls_args + [
        "--max-conns", "1", "--queue-timeout", "0.5", "--access-log", "-", "--log-format", "json"])
    admin = https_session(tls_files["ca"])
    held = held_connection(a.port, client_ctx)  # a is full now
    try:
        status, _, body = https_get(a.port, "/environ", client_ctx)
        assert status == 200 and json.loads(body)["monoport.instance_id"] == "b"
        snap_a = wait_for(lambda: (s := admin.get(a.url + "/monoport/stats.json", timeout=5).json())
                          ["connections"]["forwarded_total"]["out"] >= 1 and s)
        assert snap_a["peers"]["b"]["up"] is True
        assert "<td>b</td><td>UP</td>" in admin.get(a.url + "/monoport/stats", timeout=5).text
        snap_b = admin.get(b.url + "/monoport/stats.json", timeout=5).json()
        assert snap_b["connections"]["forwarded_total"]["in"] >= 1
        forwarded = wait_for(lambda: [r for r in access_lines(a) if r["event"] == "conn" and r["served"] == "b"])[0]
        assert forwarded["kind"] == "https" and forwarded["bytes_out"] > 0
        assert not [r for r in access_lines(a) if r.get("request", "") and "/health" in r["request"]]

        b.stop(signal.SIGKILL)
        wait_for(lambda: admin.get(a.url + "/monoport/stats.json", timeout=5).json()["peers"]["b"]["up"] is False,
                 timeout=20)
        status, _, _ = https_get(a.port, "/environ", client_ctx)
        assert status == 503
        full = wait_for(lambda: [r for r in access_lines(a) if r["termination"] == "server_full"])[0]
        assert full["event"] == "conn" and "503" in full["detail"]
        metrics = admin.get(a.url + "/monoport/metrics", timeout=5).text
        assert 'monoport_peer_up{peer="b"} 0.0' in metrics
        assert 'monoport_forwarded_connections_total{direction="out"}' in metrics
    finally:
        held.close()
