"""The demo chat under monoport's --recovery, with the npm socket.io-client in Node.

tests/js/recovering_member.js joins again only on a connect that did not
recover, as Node's documentation advises: a recovered socket must find itself
a member of its room in the chat too, not only in Socket.IO's rooms. (The
page's side -- the badge and the missed messages in place -- is in
tests/test_browser.py.)
"""

from __future__ import annotations

from tests.conftest import wait_for
from tests.test_webapp import ChatClient


def test_a_recovered_client_gets_the_missed_messages_first_and_is_still_a_member(
        monoport, tls_args, tls_files, node_clients):
    server = monoport(tls_args + ["--plain", "serve", "--recovery", "30"])
    nora = node_clients(server.url, tls_files["ca"], room="ignored")
    nora.wait("connect")
    nora.emit("join", {"room": "back", "nick": "nora"})
    assert nora.wait("ack")["answer"][0]["ok"] is True
    bob = ChatClient(server.port, tls_files["ca"])
    try:
        bob.join("back", "bob")
        nora.send("drop")
        nora.wait("disconnect")
        wait_for(lambda: bob.members() == ["bob"])
        assert bob.call("message", {"text": "while away"})["ok"]
        nora.send("back")
        again = nora.wait("connect", 2)
        assert again["recovered"] is True
        missed = [e for e in nora.of("message") if e["name"] == "message"]
        assert [e["args"][0]["text"] for e in missed] == ["while away"]
        assert missed[0]["connected"] is True and nora.events.index(missed[0]) < nora.events.index(again)
        wait_for(lambda: bob.members() == ["bob", "nora"])  # back without a join
        nora.emit("message", {"text": "back again"})
        assert nora.wait("ack", 2)["answer"][0]["ok"] is True
        wait_for(lambda: bob.texts() == ["while away", "back again"])
    finally:
        bob.close()
