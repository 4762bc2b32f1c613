"""A raw TLS client and a browser (Playwright, system chromium) chat in one room of the demo app."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from tests.clients import RawSio
from tests.test_browser import console_errors, join, open_page, say, server  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_a_raw_tls_device_and_a_browser_share_a_room(open_page, server, client_ctx):  # noqa: F811
    page = open_page()
    join(page, "mixed", "alice")
    device = RawSio(server.port, tls=client_ctx)
    try:
        ack = device.call(1, "join", {"room": "mixed", "nick": "device"})[0]
        assert ack["ok"] and sorted(ack["members"]) == ["alice", "device"]
        expect(page.locator("#members li")).to_have_text(["alice", "device"])
        device.send('42["message",{"text":"hello from a socket"}]')
        expect(page.locator("#messages li .text")).to_have_text(["hello from a socket"])
        expect(page.locator("#messages li .nick")).to_have_text(["device"])
        say(page, "hello device")
        line = device.expect(lambda l: l.startswith('42["message"') and "alice" in l)
        message = json.loads(line[2:])[1]
        assert (message["nick"], message["text"], message["room"]) == ("alice", "hello device", "mixed")
    finally:
        device.close()
    expect(page.locator("#members li")).to_have_text(["alice"])  # the device's close reached the room
