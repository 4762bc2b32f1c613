"""The npm socket.io-client in Node.js (tests/js/recovering_member.js), driven from a test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading

from tests.conftest import ROOT, stop_process, wait_for


class NodeClient:
    """One socket.io-client socket in its own Node process; ``events`` is every line it printed."""

    def __init__(self, url: str, ca: str, room: str = "r", transport: str = "websocket",
                 reconnect_delay_ms: int = 300) -> None:
        node = shutil.which("node")
        assert node, "node is missing: run scripts/system-deps.sh"
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=ca, NODE_PATH=str(ROOT / "webapp" / "node_modules"))
        self.proc = subprocess.Popen(
            [node, str(ROOT / "tests" / "js" / "recovering_member.js"), url, room, transport, str(reconnect_delay_ms)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.lock:
                self.events.append(json.loads(line))

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def emit(self, *args) -> None:
        self.send("emit " + json.dumps(list(args)))

    def of(self, kind: str) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e["event"] == kind]

    def messages(self, name: str) -> list[list]:
        return [e["args"] for e in self.of("message") if e["name"] == name]

    def wait(self, kind: str, count: int = 1, timeout: float = 15.0) -> dict:
        """The ``count``-th event of ``kind`` (bounded wait)."""
        wait_for(lambda: len(self.of(kind)) >= count, timeout,
                 what=lambda: f"{count} {kind} event(s); got {self.events[-10:]}")
        return self.of(kind)[count - 1]

    def joined(self, count: int = 1, timeout: float = 15.0) -> dict:
        return self.wait("joined", count, timeout)

    def close(self) -> None:
        stop_process(self.proc, None, 10, readers=(self.reader,))  # its stdin closed, Node ends
