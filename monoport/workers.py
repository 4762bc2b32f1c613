"""``--workers N``: N monoport processes on one port, peers of each other.

The master does not serve: it starts N workers (``python -m monoport`` with
the same command line plus ``--workers 1 --reuse-port --instance-id
<id><n>``), restarts any that dies, and passes signals on. Each worker is a
full instance: it binds the public port with SO_REUSEPORT (the kernel
spreads new connections over the workers), opens its own peer listener on a
free loopback port (or ``--peer-bind`` port + n) and announces it in Redis,
which ``--workers`` requires. So when the kernel hands a polling request to
the wrong worker, that worker forwards it to the session's owner like any
other peer would.

Why fresh processes and not ``os.fork()``: the master has already
monkey-patched and may have imported the app; a fresh interpreter per worker
has no inherited hub, greenlets or Redis sockets to untangle.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from typing import Final

import gevent

from .config import Config

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

    def worker_id(self, index: int) -> str:
        return f"{self.config.instance_id[:14]}{index}"

    def command(self, index: int) -> list[str]:
        extra = ["--workers", "1", "--reuse-port", "--instance-id", self.worker_id(index)]
        if self.config.peer_bind is not None:
            host, port = self.config.peer_bind
            extra += ["--peer-bind", f"[{host}]:{port + index if port else 0}" if ":" in host
                      else f"{host}:{port + index if port else 0}"]
        return [sys.executable, "-m", "monoport", *self.argv, *extra]

    def spawn(self, index: int) -> None:
        self.workers[index] = subprocess.Popen(self.command(index))
        self.started[index] = time.monotonic()
        log.info("worker %s started (pid %d)", self.worker_id(index), self.workers[index].pid)

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
