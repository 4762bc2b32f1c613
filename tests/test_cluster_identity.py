"""Cluster identity: deployments that share one Redis stay apart (the workers' side is in test_scale_workers)."""

from __future__ import annotations

import json
import os
import re
import socket

import redis
import requests
import socketio

from monoport.wire import proxyproto
from tests.clients import closed_without_answer, sio_client
from tests.cluster import APP, held_connection, https_get, peers_up
from tests.conftest import wait_for

OTHER_APP = ["--app", "tests.apps.second_app:app"]


def _deployment(monoport, redis: str, app: list[str], ids: list[str], extra: list[str]) -> list:
    servers = []
    for instance_id in ids:
        server = monoport(app + ["--redis", redis, "--instance-id", instance_id, "--queue-timeout", "0"] + extra)
        server.instance_id = instance_id
        servers.append(server)
    for server in servers:
        peers_up(server, len(ids) - 1)
    return servers


def _room_member(url: str, ca: str, room: str, got: list) -> socketio.Client:
    client = sio_client(url, ca, ["websocket"])
    client.on("room_message", lambda data: got.append(data))
    assert client.call("join", room, timeout=10) == "joined"
    return client


def test_two_apps_on_one_redis_never_forward_to_each_other_nor_share_broadcasts(
        redis_url, monoport, tls_args, tls_files, client_ctx):
    x1, x2 = _deployment(monoport, redis_url, APP, ["x1", "x2"], tls_args + ["--max-conns", "1"])
    y1, y2 = _deployment(monoport, redis_url, OTHER_APP, ["y1", "y2"], tls_args + ["--max-conns", "1"])
    for server in (x1, x2, y1, y2):
        assert "cluster 'tests.apps." in server.log()
    for server in (x1, x2):
        assert "peer y" not in server.log()
    for server in (y1, y2):
        assert "peer x" not in server.log()
    # broadcasts: one room name in both apps, a message sent in x reaches only x's members
    got_x: list = []
    got_y: list = []
    members = [_room_member(x1.url, tls_files["ca"], "lobby", got_x),
               _room_member(y1.url, tls_files["ca"], "lobby", got_y)]
    try:
        sender = sio_client(x2.url, tls_files["ca"], ["websocket"])
        try:
            assert sender.call("to_room", ("lobby", "for x only"), timeout=10) == "sent"
        finally:
            sender.disconnect()
        wait_for(lambda: got_x == ["for x only"], timeout=10, what=lambda: got_x)
    finally:
        for member in members:
            member.disconnect()
    assert got_y == []
    # connections: x full everywhere -> 503, never a y instance
    held = [held_connection(x1.port, client_ctx), held_connection(x2.port, client_ctx)]
    try:
        assert {conn.served_by for conn in held} == {"x1", "x2"}
        status, _, body = https_get(x1.port, "/environ", client_ctx)
        assert status == 503, body
    finally:
        for conn in held:
            conn.close()
    assert "forwarded to y" not in x1.log() + x2.log()


def test_two_apps_with_the_same_cluster_name_join_deliberately(redis_url, monoport, tls_args, client_ctx):
    a, b = (monoport(app + ["--redis", redis_url, "--instance-id", iid, "--cluster", "shared", "--max-conns", "1"]
                     + tls_args) for app, iid in ((APP, "a"), (OTHER_APP, "b")))
    peers_up(a, 1)
    peers_up(b, 1)
    held = held_connection(a.port, client_ctx)
    try:
        status, _, body = https_get(a.port, "/environ", client_ctx)
        assert status == 200 and json.loads(body)["monoport.instance_id"] == "b"
    finally:
        held.close()


def test_a_stranger_announced_in_our_cluster_is_never_forwarded_to_and_warned_about_once(
        redis_url, monoport, tls_args, client_ctx):
    stranger = monoport(OTHER_APP + ["--redis", redis_url, "--instance-id", "evil"] + tls_args)
    peer_port = int(re.search(r"listening on 127\.0\.0\.1:(\d+) \(peer\)", stranger.log()).group(1))
    # the forged announcement: under our cluster's key, pointing at another cluster's instance
    client = redis.Redis.from_url(redis_url)
    client.set(f"monoport:{APP[1]}:instance:evil", json.dumps({"id": "evil", "peer": f"127.0.0.1:{peer_port}"}))
    a = monoport(APP + ["--redis", redis_url, "--instance-id", "a", "--max-conns", "1", "--queue-timeout", "0"]
                 + tls_args)
    a.wait_log("is instance evil of cluster 'tests.apps.second_app:app'", timeout=10)
    held = held_connection(a.port, client_ctx)
    try:
        for _ in range(3):
            status, _, _ = https_get(a.port, "/environ", client_ctx)
            assert status == 503  # full, and the stranger is no place to spill to
    finally:
        held.close()
    assert a.log().count("is instance evil of cluster") == 1  # polled every second, warned about once
    assert "forwarded to evil" not in a.log()


def test_a_forward_from_another_cluster_is_refused_at_the_peer_listener_with_one_warning(
        redis_url, monoport, tls_args):
    a = monoport(APP + ["--redis", redis_url, "--instance-id", "a"] + tls_args)
    peer_port = int(re.search(r"listening on 127\.0\.0\.1:(\d+) \(peer\)", a.log()).group(1))
    header = proxyproto.build_v2(("203.0.113.9", 4242), ("127.0.0.1", a.port), forwarded_by="evil",
                                 cluster="someone-else")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", peer_port), timeout=5) as sock:
            sock.sendall(header + b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.settimeout(5)
            assert closed_without_answer(sock)
    a.wait_log("forward from cluster 'someone-else' refused")
    wait_for(lambda: a.log().count("forward from cluster 'someone-else' refused") == 3)
    assert a.log().count("is not of this cluster") == 1
    # one of ours is served on the same listener
    ours = proxyproto.build_v2(("203.0.113.9", 4242), ("127.0.0.1", a.port), forwarded_by="b", cluster=APP[1])
    with socket.create_connection(("127.0.0.1", peer_port), timeout=5) as sock:
        sock.sendall(ours + b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_check_names_the_cluster_and_lists_the_instances_announced_in_it(redis_url, monoport):
    import subprocess
    import sys

    from tests.conftest import ROOT

    monoport(APP + ["--tls", "off", "--redis", redis_url, "--instance-id", "live1"])
    monoport(OTHER_APP + ["--tls", "off", "--redis", redis_url, "--instance-id", "other"])
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PORT", "WEB_CONCURRENCY")}

    def check() -> str:
        return subprocess.run([sys.executable, "-m", "monoport", "--check", "--tls", "off", "--redis", redis_url,
                               *APP], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60).stdout

    out = wait_for(lambda: "live1@" in (text := check()) and text, timeout=20)
    assert f"cluster {APP[1]}" in out and "redis ok (1 instance(s) announced: live1@127.0.0.1:" in out
    assert "other@" not in out


def test_health_says_not_ready_until_redis_answers(monoport):
    server = monoport(APP + ["--tls", "off", "--redis", "redis://127.0.0.1:1/0"])
    answer = requests.get(f"http://127.0.0.1:{server.port}/monoport/health", timeout=5)
    assert answer.status_code == 503 and answer.json()["ready"] is False and answer.json()["draining"] is False
