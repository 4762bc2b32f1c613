"""examples/raw_client.py (stdlib only) chats with a WebSocket client in the demo app."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from tests.clients import sio_client
from tests.conftest import ROOT


@pytest.mark.parametrize("use_tls", [False, True], ids=["clear", "tls"])
def test_example_client_joins_a_room_and_chats_with_a_websocket_client(monoport, tls_args, tls_files, use_tls):
    server = monoport(tls_args if use_tls else ["--tls", "off"])  # the default app: the demo chat
    url = server.url if use_tls else f"http://127.0.0.1:{server.port}"
    browser = sio_client(url, tls_files["ca"] if use_tls else None, ["websocket"])
    seen = threading.Event()

    def on_message(data):
        if data.get("nick") == "device":
            seen.set()
            browser.emit("message", {"text": "hello device"})

    browser.on("message", on_message)
    try:
        assert browser.call("join", {"room": "garden", "nick": "browser"}, timeout=10)["ok"]
        cmd = [sys.executable, str(ROOT / "examples" / "raw_client.py"), "localhost", str(server.port),
               "--room", "garden", "--nick", "device", "--say", "hello browser", "--max-messages", "2"]
        if use_tls:
            cmd += ["--tls", "--cafile", tls_files["ca"]]
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    finally:
        browser.disconnect()
    assert seen.is_set()
    assert done.returncode == 0, done.stderr
    chat = [line for line in done.stdout.splitlines() if line.startswith("[garden]")]
    assert chat == ["[garden] device: hello browser", "[garden] browser: hello device"]
    assert "* garden: browser, device" in done.stdout  # the members event
    assert "joined garden as device" in done.stderr
