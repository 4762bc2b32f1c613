"""``--workers N``: N monoport processes on one port, peers of each other.

The master does not serve: it starts N workers (``python -m monoport`` with
the same command line plus ``--workers 1 --reuse-port --instance-id
<id><n>``), restarts any that dies, and passes signals on. Each worker is a
full instance: it binds the public port with SO_REUSEPORT (the kernel
spreads new connections over the workers) and announces its peer listener
in Redis, which ``--workers`` requires. So when the kernel hands a polling
request to the wrong worker, that worker forwards it to the session's owner
like any other peer would.

The master binds every worker's peer listener itself (a free loopback port,
or ``--peer-bind`` port + n) before it starts any worker, and hands each
worker its socket (``--peer-fd``) and the others' ids and addresses
(``--sibling``). So a worker routes a sibling's sessions from its first
request, without waiting for Redis discovery and health polls; and a
worker that is replaced gets the same socket again, so connections sent to
it while it restarts wait in the backlog instead of being refused.

Why fresh processes and not ``os.fork()``: the master has already
monkey-patched and may have imported the app; a fresh interpreter per worker
has no inherited hub, greenlets or Redis sockets to untangle.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from typing import Final

import gevent

from .config import Config
from .config_values import HostPort
from .connection import format_address
from .listener import bind_socket

log = logging.getLogger("monoport")

#: A worker that exits this soon after starting is failing to start (a port
#: in use, a broken app): restarting it in a loop would only hide that.
EARLY_EXIT: Final = 3.0
#: Pause before restarting a worker that died, in seconds.
RESTART_DELAY: Final = 1.0
#: How often the master looks at its workers, in seconds.
WATCH_INTERVAL: Final = 0.2


class Master:
    def __init__(self, config: Config, argv: list[str]) -> None:
        self.config = config
        self.argv = argv
        self.workers: list[subprocess.Popen | None] = [None] * config.workers
        self.started: list[float] = [0.0] * config.workers
        self.stopping = False
        self.exit_code = 0
        #: each worker's peer listener, bound here and inherited by the worker
        self.peer_socks: list[socket.socket] = []

    def bind_peer_listeners(self) -> None:
        host, port = self.config.peer_bind or ("127.0.0.1", 0)
        for index in range(len(self.workers)):
            sock = bind_socket(host, port + index if port else 0)
            sock.set_inheritable(True)
            self.peer_socks.append(sock)

    def peer_address(self, index: int) -> HostPort:
        """Where siblings dial worker ``index`` (the same host: loopback for a wildcard bind)."""
        host, port = self.peer_socks[index].getsockname()[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return host, port

    def worker_id(self, index: int) -> str:
        return f"{self.config.instance_id[:14]}{index}"

    def command(self, index: int) -> list[str]:
        extra = ["--workers", "1", "--reuse-port", "--instance-id", self.worker_id(index),
                 "--peer-fd", str(self.peer_socks[index].fileno())]
        for other in range(len(self.workers)):
            if other != index:
                extra += ["--sibling", f"{self.worker_id(other)}@{format_address(self.peer_address(other))}"]
        return [sys.executable, "-m", "monoport", *self.argv, *extra]

    def spawn(self, index: int) -> None:
        worker = self.workers[index] = subprocess.Popen(self.command(index),
                                                        pass_fds=(self.peer_socks[index].fileno(),))
        self.started[index] = time.monotonic()
        log.info("worker %s started (pid %d)", self.worker_id(index), worker.pid)

    def signal_all(self, signum: int) -> None:
        for proc in self.workers:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signum)

    def stop(self, signum: int) -> None:
        if not self.stopping:
            log.info("master: %s, stopping %d worker(s)", signal.Signals(signum).name, len(self.workers))
        self.stopping = True
        self.signal_all(signum)

    def run(self) -> int:
        log.info("master: %d workers, instance ids %s..%s", len(self.workers), self.worker_id(0),
                 self.worker_id(len(self.workers) - 1))
        try:
            self.bind_peer_listeners()
        except OSError as exc:
            log.error("master: cannot bind the workers' peer listeners (--peer-bind): %s", exc.strerror or exc)
            return 2
        for index in range(len(self.workers)):
            self.spawn(index)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            gevent.signal_handler(signum, self.stop, signum)
        for signum in (signal.SIGHUP, signal.SIGUSR1):
            gevent.signal_handler(signum, self.signal_all, signum)
        while not self.stopping:
            self.watch()
            gevent.sleep(WATCH_INTERVAL)
        deadline = time.monotonic() + self.config.graceful_timeout + 5
        for proc in self.workers:
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sock in self.peer_socks:
            sock.close()
        log.info("master: all workers stopped")
        return self.exit_code

    def watch(self) -> None:
        for index, proc in enumerate(self.workers):
            if proc is None or proc.poll() is None:
                continue
            code = proc.returncode
            if time.monotonic() - self.started[index] < EARLY_EXIT and code not in (-signal.SIGKILL,):
                log.error("worker %s exited with %s right after starting; stopping", self.worker_id(index), code)
                self.exit_code = code if code and code > 0 else 1
                self.stop(signal.SIGTERM)
                return
            log.warning("worker %s (pid %d) exited with %s; restarting", self.worker_id(index), proc.pid, code)
            self.workers[index] = None
            gevent.sleep(RESTART_DELAY)
            if not self.stopping:
                self.spawn(index)
