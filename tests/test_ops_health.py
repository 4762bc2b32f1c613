"""The health endpoint and the live connection count behind it (peers poll this)."""

from __future__ import annotations

from tests.clients import https_session, sio_client
from tests.conftest import wait_for

APP = ["--app", "tests.apps.echo_app:app"]


def test_health_is_json_and_counts_live_connections(monoport, tls_args, tls_files):
    server = monoport(APP + tls_args + ["--instance-id", "ab12"])
    session = https_session(tls_files["ca"])
    # this very request's keep-alive connection (once the fixture's start-up probe has gone)
    health = wait_for(lambda: (h := session.get(server.url + "/monoport/health", timeout=5).json())["conns"] == 1 and h)
    assert set(health) == {"id", "cluster", "conns", "max_conns", "draining", "ready", "lag", "lagging", "in_app",
                           "version"}
    assert health["id"] == "ab12" and health["draining"] is False and health["max_conns"] == 10000  # --max-conns
    assert health["ready"] is True and health["cluster"] == "tests.apps.echo_app:app"  # the --app spec
    client = sio_client(server.url, tls_files["ca"], ["websocket"])
    try:
        assert wait_for(lambda: session.get(server.url + "/monoport/health", timeout=5).json()["conns"] == 2)
        snap = session.get(server.url + "/monoport/stats.json", timeout=5).json()
        assert snap["connections"]["by_kind"].get("wss") == 1
    finally:
        client.disconnect()
    assert wait_for(lambda: session.get(server.url + "/monoport/health", timeout=5).json()["conns"] == 1)


def test_admin_prefix_moves_the_pages(monoport, tls_args, tls_files):
    server = monoport(APP + tls_args + ["--admin-prefix", "/_ops"])
    session = https_session(tls_files["ca"])
    assert session.get(server.url + "/_ops/health", timeout=5).json()["id"]
    assert session.get(server.url + "/monoport/health", timeout=5).status_code == 404
