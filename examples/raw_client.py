#!/usr/bin/env python3
"""A chat client for devices: Socket.IO over a plain TCP or TLS socket.

The reference for anyone writing a monoport raw TCP client, in any
language. It needs only a socket (and TLS, if the port speaks it) and a
JSON library; no HTTP, no WebSocket. Python standard library only.

The wire (README, "Raw TCP clients"): one Engine.IO v4 packet per line,
UTF-8, ending in LF. The server speaks first with the open packet
``0{"sid":...,"pingInterval":...}``. Then:

    > 40                                    Socket.IO connect (default namespace)
    < 40{"sid":"..."}                       connected
    > 421["join",{"room":"lobby","nick":"dev"}]   event "join", ack id 1
    < 431[{"ok":true,"room":"lobby",...}]   the ack
    < 42["message",{"nick":..,"text":..}]   an event from the server
    < 2                                     ping: answer 3 at once, or be dropped
    > 3

Send ``40`` right after connecting, before the open packet arrives: the
server recognises a raw client from its first bytes and answers at once; a
client that waits silently gets the open packet only after the server's
sniff timeout (2 s by default).

Events are those of the demo chat (webapp/): ``join {room, nick}``,
``message {text}``; the server sends ``message {id, room, nick, text, ts}``,
``members {room, members}`` and ``error {code, message}``.

Usage:
    python examples/raw_client.py localhost 8443 --tls --cafile certs/monoport-dev-ca.pem --room lobby --nick dev
    python examples/raw_client.py localhost 8443 --tls --insecure       # skip verification
    echo hello | python examples/raw_client.py localhost 8000          # clear TCP (--tls off)

Lines typed on stdin are sent as chat messages.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import threading


class RawSocketIO:
    """A minimal Socket.IO client over newline-framed Engine.IO packets."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.lock = threading.Lock()  # stdin thread and main thread both write
        self.next_ack = 1

    def send_line(self, line: str) -> None:
        with self.lock:
            self.sock.sendall(line.encode("utf-8") + b"\n")

    def read_line(self) -> str | None:
        """One packet, or None when the server closed the connection."""
        raw = self.reader.readline()
        if not raw:
            return None
        return raw.decode("utf-8").rstrip("\r\n")

    def emit(self, event: str, data: object, ack: bool = False) -> int | None:
        """Send a Socket.IO EVENT (``42``), optionally with an ack id."""
        ack_id = None
        if ack:
            ack_id, self.next_ack = self.next_ack, self.next_ack + 1
        self.send_line("42" + ("" if ack_id is None else str(ack_id)) + json.dumps([event, data]))
        return ack_id

    def connect(self) -> dict:
        """Engine.IO open + Socket.IO connect; returns the open packet's data."""
        self.send_line("40")  # first, so the server need not wait for the sniff timeout
        opened = self.read_line()
        if not opened or not opened.startswith("0"):
            raise ConnectionError(f"expected the open packet, got {opened!r}")
        info = json.loads(opened[1:])
        while True:
            line = self.read_line()
            if line is None:
                raise ConnectionError("closed during the Socket.IO handshake")
            if line == "2":
                self.send_line("3")
            elif line.startswith("40"):
                return info
            elif line.startswith("44"):
                raise ConnectionError(f"Socket.IO connection refused: {line[2:]}")


def parse_socketio(line: str) -> tuple[str, int | None, object] | None:
    """A Socket.IO packet in an Engine.IO MESSAGE line: (type, ack id, data).

    Only the default namespace is used here; a namespace would follow the
    type as ``/name,``.
    """
    if len(line) < 2 or line[0] != "4":
        return None
    kind, rest = line[1], line[2:]
    digits = len(rest) - len(rest.lstrip("0123456789"))
    ack_id = int(rest[:digits]) if digits else None
    body = rest[digits:]
    return kind, ack_id, json.loads(body) if body else None


def show(event: str, data: dict, out) -> bool:
    """Print one server event; True if it was a chat message."""
    if event == "message":
        print(f"[{data.get('room')}] {data.get('nick')}: {data.get('text')}", file=out, flush=True)
        return True
    if event == "members":
        print(f"* {data.get('room')}: {', '.join(data.get('members', []))}", file=out, flush=True)
    elif event == "error":
        print(f"! {data.get('code')}: {data.get('message')}", file=out, flush=True)
    return False


def open_socket(args: argparse.Namespace) -> socket.socket:
    sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    if args.tls:
        ctx = ssl.create_default_context(cafile=args.cafile)
        if args.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(sock, server_hostname=args.host)
    sock.settimeout(None)  # Engine.IO pings tell a dead server apart from a quiet one
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--tls", action="store_true", help="speak TLS (monoport's default)")
    parser.add_argument("--cafile", help="CA certificate to verify the server with (e.g. the dev CA)")
    parser.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--nick", default="device")
    parser.add_argument("--say", action="append", default=[], help="send this message after joining (repeatable)")
    parser.add_argument("--max-messages", type=int, default=0, help="exit after printing this many messages")
    parser.add_argument("--timeout", type=float, default=10.0, help="connect timeout, seconds")
    args = parser.parse_args(argv)

    out = sys.stdout
    try:
        client = RawSocketIO(open_socket(args))
        info = client.connect()
    except (OSError, ConnectionError, ValueError) as exc:
        print(f"cannot connect: {exc}", file=sys.stderr)
        return 1
    print(f"connected, sid {info['sid']}, ping every {info['pingInterval'] / 1000:g}s", file=sys.stderr)
    join_ack = client.emit("join", {"room": args.room, "nick": args.nick}, ack=True)

    def send_stdin() -> None:
        for text in sys.stdin:
            if text.strip():
                client.emit("message", {"text": text.rstrip("\n")})

    printed = 0
    while True:
        line = client.read_line()
        if line is None:
            print("server closed the connection", file=sys.stderr)
            return 0 if args.max_messages and printed >= args.max_messages else 1
        if line == "2":
            client.send_line("3")
            continue
        packet = parse_socketio(line)
        if packet is None:
            continue
        kind, ack_id, data = packet
        if kind == "3" and ack_id == join_ack:  # ACK of our join
            reply = data[0] if isinstance(data, list) and data else {}
            if not reply.get("ok"):
                print(f"join refused: {reply.get('message')}", file=sys.stderr)
                return 1
            print(f"joined {reply['room']} as {reply['nick']}; here: {', '.join(reply['members'])}",
                  file=sys.stderr)
            for message in reply.get("history", []):
                show("message", message, out)
            for text in args.say:
                client.emit("message", {"text": text})
            threading.Thread(target=send_stdin, daemon=True).start()
        elif kind == "2" and isinstance(data, list) and data:
            if show(data[0], data[1] if len(data) > 1 else {}, out):
                printed += 1
                if args.max_messages and printed >= args.max_messages:
                    return 0
        elif kind == "1":
            print("disconnected by the server", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
