"""A finished connection is freed as soon as it is closed, not at the next garbage collection.

Its socket meter and the connection point at each other; ``Connection.close``
unlinks them, so the connection, its stream and its (TLS) socket go by
reference counting, and a server making thousands of connections a second
does not leave each one for the collector.
"""

import gc
import weakref

import pytest
from gevent import socket

from monoport.connection import Connection


@pytest.fixture
def no_collector():
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def test_a_closed_connection_is_freed_without_the_garbage_collector(no_collector):
    ours, theirs = socket.socketpair()
    try:
        conn = Connection(ours, ("127.0.0.1", 1), ("127.0.0.1", 2), None)
        theirs.sendall(b"ping")
        assert conn.sock.recv(16) == b"ping" and conn.bytes_in == 4
        conn.sock.sendall(b"pong")
        assert theirs.recv(16) == b"pong" and conn.bytes_out == 4
        gone = weakref.ref(conn)
        conn.close()
        assert (conn.bytes_in, conn.bytes_out) == (4, 4)  # the counts stay for the access log and stats
        del conn
        assert gone() is None
    finally:
        theirs.close()


def test_a_closed_connection_refuses_to_send(no_collector):
    ours, theirs = socket.socketpair()
    conn = Connection(ours, ("127.0.0.1", 1), ("127.0.0.1", 2), None)
    conn.close()
    with pytest.raises(OSError):
        conn.sock.sendall(b"late")
    assert conn.bytes_out == 0
    theirs.close()
