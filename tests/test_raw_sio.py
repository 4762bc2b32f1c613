"""``--raw sio`` end to end: raw TCP and TLS clients are full Socket.IO clients."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import threading

import pytest

from tests.clients import RawSio, sio_client
from tests.conftest import stop_process, wait_for

ECHO = ["--app", "tests.apps.echo_app:app"]
FASTPING = ["--app", "tests.apps.fastping_app:app"]


@pytest.fixture
def server(monoport, tls_args):
    return monoport(ECHO + tls_args)


def conn_lines(log: str, text: str) -> list[str]:
    return [line for line in log.splitlines() if " conn " in line and text in line]


def test_raw_clear_and_tls_clients_share_a_room_with_a_websocket_client(server, tls_files, client_ctx):
    ws = sio_client(server.url, tls_files["ca"], ["websocket"])
    got = []
    arrived = threading.Event()

    def on_room_message(data):
        got.append(data)
        if len(got) == 3:  # its own, then the two raw clients'
            arrived.set()

    ws.on("room_message", on_room_message)
    clear = RawSio(server.port)
    secure = RawSio(server.port, tls=client_ctx)
    try:
        assert ws.call("join", "lobby", timeout=10) == "joined"
        for raw in (clear, secure):
            assert raw.open["sid"].startswith(raw.open["sid"].split(".")[0] + ".")
            assert raw.open["upgrades"] == []
            assert raw.call(1, "join", "lobby") == ["joined"]
        # the app sees a raw client with its true scheme and address
        assert clear.call(2, "whoami") == [{"transport": "raw", "scheme": "http", "instance": clear.open["sid"].split(".")[0],
                                            "remote": "127.0.0.1"}]
        assert secure.call(2, "whoami")[0]["scheme"] == "https"
        # WebSocket -> both raw clients
        assert ws.call("to_room", ("lobby", "from ws"), timeout=10) == "sent"
        for raw in (clear, secure):
            assert raw.expect(lambda l: l.startswith("42")) == '42["room_message","from ws"]'
        # raw -> WebSocket (and to the other raw client)
        assert clear.call(3, "to_room", "lobby", "from clear") == ["sent"]
        assert secure.call(3, "to_room", "lobby", "from tls") == ["sent"]
        assert arrived.wait(10)
        assert sorted(got) == ["from clear", "from tls", "from ws"]
        assert secure.expect(lambda l: "from clear" in l) == '42["room_message","from clear"]'
    finally:
        ws.disconnect()
        clear.close()
        secure.close()
    wait_for(lambda: len(conn_lines(server.log(), "raw Socket.IO")) == 2)  # one line per raw session
    assert len(conn_lines(server.log(), "raw-tls")) == 1
    assert not conn_lines(server.log(), "silent")  # they spoke first: served without waiting


def test_binary_packets_travel_as_base64_lines_both_ways(server):
    raw = RawSio(server.port)
    blob = bytes(range(256))
    try:
        # an event with one binary attachment, ack id 7: header line, then the attachment
        raw.send('451-7["echo",{"_placeholder":true,"num":0}]')
        raw.send("b" + base64.b64encode(blob).decode())
        header = raw.expect(lambda l: l.startswith("461-7"))
        assert json.loads(header[len("461-7"):]) == [{"_placeholder": True, "num": 0}]
        attachment = raw.line()
        assert attachment.startswith("b")
        assert base64.b64decode(attachment[1:]) == blob
    finally:
        raw.close()


def test_pings_answered_keep_the_session_and_missed_pongs_end_it(monoport):
    server = monoport(FASTPING + ["--tls", "off"])
    mute = RawSio(server.port)
    alive = RawSio(server.port)
    try:
        assert alive.open["pingInterval"] == 1000 and alive.open["pingTimeout"] == 2000
        for _ in range(3):  # three ping rounds, answered
            alive.expect(lambda l: l == "2", answer_pings=False)
            alive.send("3")
        assert alive.call(1, "echo", "still here") == ["still here"]
        # the mute client never answers: python-engineio's own timeout closes it
        assert mute.line() == "2"
        assert mute.closed()
    finally:
        alive.close()
        mute.close()
    server.wait_log("closed by server")


def test_a_silent_client_gets_the_open_packet_after_the_deadline(monoport, tls_args, client_ctx):
    server = monoport(ECHO + tls_args + ["--sniff-timeout", "0.5"])
    for tls in (None, client_ctx):
        raw = RawSio(server.port, tls=tls, connect=False)
        try:
            first = raw.line()  # nothing sent: the server speaks once the deadline passes
            assert first.startswith('0{"sid":')
            raw.send("40")
            assert raw.line().startswith("40{")
        finally:
            raw.close()
    wait_for(lambda: len(conn_lines(server.log(), "raw Socket.IO")) == 2)
    log = server.log()
    assert len(conn_lines(log, "raw-silent")) == 1 and len(conn_lines(log, "raw-tls-silent")) == 1


@pytest.mark.parametrize("bad,why", [
    (b"4" + b"x" * 2000, "line longer than 1000 bytes"),
    (b'42["echo","\xff\xfe"]', "not valid UTF-8"),
    (b"hello there", "unknown packet type 'h'"),
    (b"b%%%", "not valid base64"),
])
def test_bad_lines_close_only_that_connection_with_one_log_line(monoport, tls_args, bad, why):
    server = monoport(ECHO + tls_args + ["--max-payload", "1000"])
    bystander = RawSio(server.port)
    culprit = RawSio(server.port)
    try:
        assert culprit.call(1, "echo", "ok") == ["ok"]
        culprit.sock.sendall(bad + b"\n")
        assert culprit.closed()
        assert bystander.call(1, "echo", "unaffected") == ["unaffected"]
    finally:
        bystander.close()
        culprit.close()
    log = server.wait_log(why)
    lines = conn_lines(log, "protocol error")
    assert len(lines) == 1 and why in lines[0], log
    assert "Traceback" not in log


def test_raw_off_closes_with_one_log_line(monoport, tls_args):
    server = monoport(ECHO + tls_args + ["--raw", "off"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"40\n")
        sock.settimeout(20)
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
    log = server.wait_log("raw TCP is off")
    assert len(conn_lines(log, "raw TCP is off")) == 1


def test_openssl_s_client_is_a_socketio_client(server, tls_files):
    """The DESIGN's session, typed through ``openssl s_client`` (CRLF line ends)."""
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-servername", "localhost",
         "-CAfile", tls_files["ca"], "-quiet", "-crlf"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        proc.stdin.write(b'40\n421["echo","via openssl"]\n')
        proc.stdin.flush()
        lines = []
        for _ in range(10):
            line = proc.stdout.readline().decode().rstrip("\r\n")
            lines.append(line)
            if line.startswith("431"):
                break
        assert lines[0].startswith('0{"sid":')
        assert lines[1].startswith("40{")
        assert lines[-1] == '431["via openssl"]'
    finally:
        stop_process(proc, signal.SIGKILL, 10)


def test_a_client_that_stops_reading_is_closed_and_others_go_on(monoport):
    server = monoport(FASTPING + ["--tls", "off"])
    stuck = RawSio(server.port)
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        payload = "x" * 50_000
        try:
            for n in range(400):  # ~20 MB of echoes that are never read: the server's sends block
                stuck.send(f'42{n}["echo","{payload}"]')
        except OSError:
            pass  # the server gave up on it first
        server.wait_log("stopped reading", timeout=30)
    finally:
        stuck.close()
    other = RawSio(server.port)  # the hub was never blocked: others are served
    try:
        assert other.call(1, "echo", "fine") == ["fine"]
    finally:
        other.close()
    line = [line for line in server.log().splitlines() if "stopped reading" in line]
    assert len(line) == 1 and "client timeout (stopped reading for 3s)" in line[0]


def test_sigterm_disconnects_raw_clients_without_waiting_for_them(monoport, tls_args, client_ctx):
    server = monoport(ECHO + tls_args)
    clients = [RawSio(server.port), RawSio(server.port, tls=client_ctx)]
    try:
        for raw in clients:
            assert raw.call(1, "echo", "before") == ["before"]
        server.stop()
        for raw in clients:
            assert raw.closed()
    finally:
        for raw in clients:
            raw.close()
    log = server.log()
    assert len(conn_lines(log, "closed by server")) == 2, log
    assert "still open" not in log  # nobody had to be killed at the end of the drain


def test_garbage_first_is_refused_before_any_session_is_made(monoport):
    server = monoport(ECHO + ["--tls", "off"])
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"\x00\x01garbage\n")
        sock.settimeout(20)
        try:
            assert sock.recv(100) == b""  # not even an open packet
        except ConnectionResetError:
            pass
    log = server.wait_log("protocol error")
    lines = conn_lines(log, "protocol error")
    assert len(lines) == 1 and "unknown packet type '\\x00'" in lines[0] and "sid=" not in lines[0], log
