"""The demo chat over real Socket.IO clients: monoport serves `webapp` by default, over TLS.

Each rule of webapp's protocol (its module docstring) is exercised by
python-socketio clients against a real `python -m monoport` process, and each
refusal is checked to leave the chat working for everyone else.

The server has TLS (page and /api/info are fetched over https) and
``--plain serve``, and the Python clients talk clear WebSocket or https
long-polling: python-socketio's WebSocket client reads and writes one
``ssl.SSLSocket`` from two threads, and about one connection in a few
hundred then sees a spurious EOF and drops (observed: the server receives a
clean EOF from the client mid-session). Browsers over wss are covered by
tests/test_browser.py.
"""

from __future__ import annotations

import threading

import pytest

from tests.clients import https_session, sio_client
from tests.conftest import wait_for
from webapp import chat as rules


class ChatClient:
    """A python-socketio client that records every server event it receives."""

    def __init__(self, port: int, ca: str, transport: str = "websocket") -> None:
        self.events: dict[str, list] = {"message": [], "members": [], "typing": [], "error": []}
        self.lock = threading.Lock()
        if transport == "websocket":
            self.sio = sio_client(f"http://127.0.0.1:{port}", None, ["websocket"])
        else:
            self.sio = sio_client(f"https://127.0.0.1:{port}", ca, ["polling"])
        for name in self.events:
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str):
        def record(data=None, *offset):  # monoport --recovery appends an offset argument
            with self.lock:
                self.events[name].append(data)
        return record

    def call(self, event: str, data=None):
        return self.sio.call(event, data, timeout=10)

    def join(self, room: str, nick: str) -> dict:
        return self.call("join", {"room": room, "nick": nick})

    def members(self) -> list[str] | None:
        """The last member list received, if any."""
        with self.lock:
            return self.events["members"][-1]["members"] if self.events["members"] else None

    def texts(self) -> list[str]:
        with self.lock:
            return [m["text"] for m in self.events["message"]]

    def errors(self) -> list[str]:
        with self.lock:
            return [e["code"] for e in self.events["error"]]

    def close(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()


@pytest.fixture
def chat_server(monoport, tls_args):
    """monoport with no --app: the demo app is the default."""
    return monoport(tls_args + ["--plain", "serve"])


@pytest.fixture
def clients(chat_server, tls_files):
    made: list[ChatClient] = []

    def connect(transport: str = "websocket") -> ChatClient:
        client = ChatClient(chat_server.port, tls_files["ca"], transport)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


def test_the_demo_app_is_the_default_and_serves_page_client_and_info(chat_server, tls_files):
    session = https_session(tls_files["ca"])
    page = session.get(chat_server.url + "/", timeout=10)
    assert page.status_code == 200 and "monoport chat" in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    bundle = session.get(chat_server.url + "/vendor/socket.io.min.js", timeout=10)
    assert bundle.status_code == 200 and b"Socket.IO v4" in bundle.content[:200]
    assert session.get(chat_server.url + "/vendor/../__init__.py", timeout=10).status_code == 404
    assert session.get(chat_server.url + "/favicon.ico", timeout=10).status_code == 204  # no console error
    info = session.get(chat_server.url + "/api/info", timeout=10).json()
    assert info["scheme"] == "https" and info["tls_by"] == "monoport"
    assert info["tls"]["version"] in ("TLSv1.2", "TLSv1.3")


def test_two_clients_chat_with_history_members_and_typing(clients):
    alice, bob = clients(), clients("polling")
    joined = alice.join("Lobby", "alice")
    assert joined["ok"] and joined["room"] == "lobby" and joined["members"] == ["alice"]
    assert joined["history"] == []
    assert alice.call("message", {"text": "first"})["ok"]
    joined = bob.join("lobby", "bob")
    assert [m["text"] for m in joined["history"]] == ["first"]
    assert joined["members"] == ["alice", "bob"]
    wait_for(lambda: {"room": "lobby", "members": ["alice", "bob"]} in alice.events["members"])
    bob.sio.emit("typing")
    wait_for(lambda: alice.events["typing"])
    assert alice.events["typing"][0] == {"room": "lobby", "nick": "bob", "typing": True}
    assert bob.call("message", "<b>hi</b> & bye")["ok"]  # a bare string is a message too
    wait_for(lambda: alice.texts() == ["first", "<b>hi</b> & bye"])
    msg = alice.events["message"][-1]
    assert msg["nick"] == "bob" and msg["room"] == "lobby" and msg["ts"] > 1_600_000_000_000
    assert bob.texts() == ["<b>hi</b> & bye"]  # the sender gets its own message too
    bob.close()
    wait_for(lambda: alice.events["members"][-1] == {"room": "lobby", "members": ["alice"]})


def test_history_is_bounded_to_the_last_100_messages(clients):
    writer, reader = clients(), clients()
    writer.join("history", "writer")
    # the rate limit refills at 2/s, so 105 messages are written by several clients,
    # each within its burst (its join spends one token)
    for n in range(105):
        if n % (rules.RATE_BURST - 1) == 0 and n:
            writer.close()
            writer = clients()
            writer.join("history", "writer")
        assert writer.call("message", {"text": f"m{n}"})["ok"]
    history = reader.join("history", "reader")["history"]
    assert [m["text"] for m in history] == [f"m{n}" for n in range(5, 105)]


@pytest.mark.parametrize("payload,code", [
    ({"room": "no spaces!", "nick": "carol"}, "bad_room"),
    ({"room": "x" * 33, "nick": "carol"}, "bad_room"),
    ({"room": "ok", "nick": ""}, "bad_nick"),
    ({"room": "ok", "nick": "<script>"}, "bad_nick"),
    ({"room": "ok", "nick": "n" * 25}, "bad_nick"),
    ("not an object", "bad_nick"),
])
def test_bad_joins_get_an_error_event_and_the_room_goes_on(clients, chat_server, payload, code):
    alice, bob, carol = clients(), clients(), clients()
    alice.join("room1", "alice")
    bob.join("room1", "bob")
    answer = carol.call("join", payload)
    assert answer["ok"] is False and answer["code"] == code
    wait_for(lambda: carol.errors() == [code])
    assert bob.call("message", {"text": "still here"})["ok"]
    wait_for(lambda: alice.texts() == ["still here"])
    assert carol.join("room1", "carol")["ok"]  # the refused client can still join properly


def test_oversized_message_gets_too_long_and_others_keep_chatting(clients):
    alice, bob = clients(), clients()
    alice.join("big", "alice")
    bob.join("big", "bob")
    answer = alice.call("message", {"text": "é" * (rules.MAX_MESSAGE_BYTES // 2 + 1)})  # 4098 bytes
    assert answer == {"ok": False, "code": "too_long", "message": answer["message"]}
    wait_for(lambda: alice.errors() == ["too_long"])
    assert alice.call("message", {"text": "x" * rules.MAX_MESSAGE_BYTES})["ok"]  # exactly 4 KB is fine
    assert bob.call("message", {"text": "bob goes on"})["ok"]
    wait_for(lambda: alice.texts()[-1:] == ["bob goes on"])
    assert alice.call("message", {"text": "hi"}) and alice.sio.connected


def test_message_before_join_is_refused(clients):
    lonely = clients()
    assert lonely.call("message", {"text": "hello?"})["code"] == "not_joined"
    wait_for(lambda: lonely.errors() == ["not_joined"])


def test_a_flooding_client_gets_rate_limited_and_the_chat_goes_on(clients, chat_server):
    flooder, alice, bob = clients(), clients(), clients()
    for client, nick in ((flooder, "flooder"), (alice, "alice"), (bob, "bob")):
        client.join("flood", nick)
    for n in range(60):
        flooder.sio.emit("message", {"text": f"spam {n}"})
    wait_for(lambda: "rate_limited" in flooder.errors(), timeout=20)
    refused = flooder.call("message", {"text": "one more"})
    assert refused["ok"] is False and refused["code"] == "rate_limited"
    # the flood reached the room only up to the burst, and cost at most a few error events
    wait_for(lambda: len(bob.texts()) >= rules.RATE_BURST - 1)  # its join spent one token
    assert len([t for t in bob.texts() if t.startswith("spam")]) <= rules.RATE_BURST + 20
    assert len(flooder.errors()) < 30
    assert alice.call("message", {"text": "alice goes on"})["ok"]
    wait_for(lambda: "alice goes on" in bob.texts())
    assert flooder.sio.connected
    log = chat_server.wait_log("is rate limited")
    assert log.count("is rate limited") < 30 and "Traceback" not in log
