"""The listener's per-socket setup, on a real loopback TCP connection."""

import socket

from gevent.pool import Pool

from monoport.listener import Listener, bind_socket


class _Runtime:
    """Just what Listener touches: its pool and where connections go."""

    def __init__(self) -> None:
        self.pool = Pool()
        self.served = []

    def serve_connection(self, conn) -> None:
        self.served.append(conn)


def test_accepted_sockets_have_nagle_off():
    # pywsgi writes a response head and body separately; with Nagle on, the
    # body of every keep-alive response waits ~40 ms for a delayed ACK.
    runtime = _Runtime()
    server_sock = bind_socket("127.0.0.1", 0)
    listener = Listener(server_sock, runtime.serve_connection, runtime.pool)
    client = socket.create_connection(server_sock.getsockname(), timeout=10)
    try:
        accepted, address = server_sock.accept()
        listener.handle(accepted, address)
        (conn,) = runtime.served
        assert conn.raw_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        accepted.close()
    finally:
        client.close()
        server_sock.close()


def test_a_connection_accepted_just_before_a_stop_is_still_served_and_closed():
    # The rolling-restart tests met it: the listener closed (gevent drops its handle then)
    # between the accept and the start of the connection's greenlet.
    runtime = _Runtime()
    server_sock = bind_socket("127.0.0.1", 0)
    listener = Listener(server_sock, runtime.serve_connection, runtime.pool)
    listener.start()
    client = socket.create_connection(server_sock.getsockname(), timeout=10)
    try:
        accepted, address = server_sock.accept()
        listener.do_handle(accepted, address)  # spawned, not run yet
        listener.close()
        runtime.pool.join(timeout=10)
        (conn,) = runtime.served
        assert accepted.fileno() == -1  # closed once served, as gevent does
    finally:
        client.close()
