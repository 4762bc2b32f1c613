"""The raw TCP backend behind the forwarders: one thread per connection.

The first byte picks the job: ``\\x01`` swallow everything until EOF and
answer the byte count (8 bytes, big-endian); ``\\x02`` echo every byte back.
Plain blocking sockets and big buffers, so it is never the bottleneck.
"""

import socket
import sys
import threading

BUF = 1 << 20


def serve(conn: socket.socket) -> None:
    with conn:
        mode = conn.recv(1)
        buf = bytearray(BUF)
        view = memoryview(buf)
        total = 0
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            total += n
            if mode == b"\x02":
                conn.sendall(view[:n])
        if mode == b"\x01":
            conn.sendall(total.to_bytes(8, "big"))


def main(port: int) -> None:
    server = socket.create_server(("127.0.0.1", port), backlog=128)
    while True:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main(int(sys.argv[1]))
