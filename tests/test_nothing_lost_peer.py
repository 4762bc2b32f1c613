"""Nothing lost through peer forwarding: 100 MB up and back through a full instance keep their sha256."""

from __future__ import annotations

import hashlib
import http.client
import os

import pytest

from tests.cluster import held_connection, start_cluster

SIZE = 100 * 1024 * 1024
CHUNK = 1024 * 1024


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_100_mb_through_peer_forwarding_keep_their_sha256(redis_url, monoport, tls_args, client_ctx):
    a, b = start_cluster(monoport, redis_url, ["a", "b"], tls_args + ["--max-conns", "1"])
    held = held_connection(a.port, client_ctx)  # a is full: the next connection goes to b through a
    assert held.served_by == "a"
    block = os.urandom(CHUNK)
    sent = hashlib.sha256()

    def body():
        for i in range(SIZE // CHUNK):
            chunk = block[i % 7:] + block[: i % 7]  # every megabyte differs
            sent.update(chunk)
            yield chunk

    conn = http.client.HTTPSConnection("127.0.0.1", a.port, context=client_ctx, timeout=120)
    try:
        conn.request("POST", "/echo", body=body(), headers={"Content-Length": str(SIZE)})
        response = conn.getresponse()
        assert response.status == 200
        got, received = hashlib.sha256(), 0
        while chunk := response.read(CHUNK):
            got.update(chunk)
            received += len(chunk)
    finally:
        conn.close()
        held.close()
    assert received == SIZE
    assert got.hexdigest() == sent.hexdigest()
    a.wait_log("forwarded to b@")  # the connection line is written as the connection ends
