"""The servers under test, each started fresh and stopped by pid.

Every target serves :mod:`bench.app` over TLS on one port of 127.0.0.1:

* ``monoport``: ``python -m monoport`` on one TLS port, nothing in front;
* ``stack``: stunnel (TLS) -> HAProxy (TCP frontend that detects HTTP and
  routes ``path_beg /socket.io``; ``http-server-close`` and ``forwardfor`` on
  the backends, as the seed's configuration) -> two gevent app processes,
  web and Socket.IO;
* ``nginx``: nginx terminating TLS, proxying WebSocket upgrades, -> the same
  two app processes;
* ``bare``: one gevent app process serving TLS itself, no detection at all;
* ``bare-nodelay``: the same with Nagle off, as monoport has it;
* ``uvicorn``: ``uvicorn[standard]`` (uvloop, httptools, websockets) serving
  :mod:`bench.asgi_app` (Starlette + python-socketio's AsyncServer), one
  SSLContext built at start from ``--ssl-keyfile``/``--ssl-certfile``;
* ``monoport-w2`` (only when named): ``--workers 2`` and its Redis, both cores.

Every peer runs as its users run it: one SSLContext per server (never one
per connection), Nagle off on the app processes behind HAProxy and nginx (as
gunicorn sets it), nginx with its documented session cache (tickets are on
by default in nginx, stunnel and Python's ssl alike). Every process of a
target is pinned to the targets' CPU (:func:`bench.system.pin_plan`), the
load generators to the other one.

The keep-alive split (issue 13, "where the time goes") adds targets that
only run the keep-alive workload: bare callables (:mod:`bench.hello`) served
by monoport, pywsgi and uvicorn, over TLS and in clear text.

Plus the raw TCP forwarders (monoport ``--raw HOST:PORT`` and HAProxy in TCP
mode with splicing) in front of :mod:`bench.sink`.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import psutil

#: File descriptors every started process may open (thousands of clients).
NOFILE = 65536
READY_TIMEOUT = 30.0
#: Seconds between SIGTERM and SIGKILL: a bound for every target (monoport
#: drains in about a second, the idle keep-alive grace).
STOP_GRACE = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raise_nofile() -> None:
    os.setsid()
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_limit(), nofile_limit()))


@dataclass
class Env:
    """What every target needs: a scratch directory, certificates, the interpreter."""

    tmp: Path
    cert: str
    key: str
    python: str = sys.executable
    root: Path = Path(__file__).resolve().parent.parent
    #: CPUs every target process is pinned to (None: not pinned)
    cpus: set[int] | None = None

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        cpus = self.cpus

        def setup() -> None:
            _raise_nofile()
            if cpus:
                os.sched_setaffinity(0, cpus)

        with open(self.tmp / f"{name}.log", "ab") as log:  # the child has its own descriptor: ours can go at once
            return subprocess.Popen(argv, cwd=self.root, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, preexec_fn=setup)

    def write(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)


@dataclass
class Target:
    name: str
    env: Env
    port: int = 0
    procs: list[subprocess.Popen] = field(default_factory=list)
    #: False: the target serves clear text (the TLS share of the keep-alive split)
    tls: ClassVar[bool] = True
    #: the workloads this target runs (None: every one)
    only: ClassVar[tuple[str, ...] | None] = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/"

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self.port = free_port()
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        raise NotImplementedError

    def run(self, name: str, argv: list[str]) -> None:
        self.procs.append(self.env.spawn(f"{self.name}-{name}", argv))

    def backends(self) -> tuple[int, int]:
        """Start the web and Socket.IO app processes; return their ports."""
        web, sio = free_port(), free_port()
        self.run("web", [self.env.python, "-m", "bench.backend", "--nodelay", str(web)])
        self.run("sio", [self.env.python, "-m", "bench.backend", "--nodelay", str(sio)])
        return web, sio

    def wait_ready(self) -> None:
        """Until :meth:`probe` succeeds; fails early when a process exited."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.probe():
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{self.name}: {proc.args[:3]} exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT}s (logs in {self.env.tmp})")
            time.sleep(0.2)

    def probe(self) -> bool:
        """The web app answers 200 and Socket.IO answers at all (a proxy says 502/503 while it is down).

        The Socket.IO probe is a WebSocket URL without the upgrade (400 from
        python-engineio): it opens no session, which a server would keep.
        """
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        for path, ok in (("/", (b"200",)), ("/socket.io/?EIO=4&transport=websocket", (b"200", b"400"))):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw:
                    with (ctx.wrap_socket(raw, server_hostname="localhost") if self.tls else raw) as s:
                        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
                        if s.recv(100)[9:12] not in ok:
                            return False
            except OSError:
                return False
        return True

    def pids(self) -> list[int]:
        """Every process of the target (nginx workers included)."""
        pids = []
        for proc in self.procs:
            try:
                p = psutil.Process(proc.pid)
                pids += [p.pid] + [c.pid for c in p.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return pids

    def rss(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def cpu(self) -> float:
        """CPU seconds (user + system) used so far by every process of the target.

        Per operation, this is the figure the machine's noise hardly moves:
        other processes steal wall time from a target, not CPU time.
        """
        total = 0.0
        for pid in self.pids():
            try:
                times = psutil.Process(pid).cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def disrupt(self) -> None:
        """The reconnect storm's event: the server process restarted on the same port, as its users do."""
        self.stop()
        self.launch()
        self.wait_ready()

    def stop(self) -> None:
        """SIGTERM every process we started (by pid), SIGKILL what is left after STOP_GRACE s."""
        everyone = []
        for pid in self.pids():
            try:
                everyone.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for p in everyone:  # children that outlived their parent
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.procs = []


def monoport_argv(env: Env, port: int, *extra: str) -> list[str]:
    """monoport on one TLS port; warnings only, as the proxies log nothing per request here."""
    return [env.python, "-m", "monoport", "--app", "bench.app:app", "--cert", env.cert, "--key", env.key,
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--graceful-timeout", "1", *extra]


class Monoport(Target):
    def launch(self) -> None:
        self.run("monoport", monoport_argv(self.env, self.port))


class MonoportRecovery(Target):
    """``--recovery 120``: the cost of connection state recovery (offsets, kept packets). Asked for by name."""

    def launch(self) -> None:
        self.run("monoport", monoport_argv(self.env, self.port, "--recovery", "120"))


class MonoportWorkers(Target):
    """``--workers 2``: both cores, with the Redis that workers need. Not in the default run."""

    def launch(self) -> None:
        redis_port = start_redis(self)
        self.run("monoport", monoport_argv(self.env, self.port, "--workers", "2",
                                           "--redis", f"redis://127.0.0.1:{redis_port}/0"))


def start_redis(target: Target) -> int:
    """A throwaway redis-server for a target's instances; returns its port once it accepts."""
    redis_port = free_port()
    target.run("redis", [redis_server(), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no", "--dir", str(target.env.tmp)])
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()
            return redis_port
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.1)


class MonoportPair(Target):
    """Two monoport instances sharing the port (``--reuse-port``) and a Redis: the storm drains one to the other.

    Both are pinned to the target's CPU like every target. The kernel's
    ``tcp_migrate_req`` is left as the machine has it (0 by default: the
    drained listener's queued connections are reset and their clients retry).
    """

    def launch(self) -> None:
        redis_port = start_redis(self)
        for name in ("a", "b"):
            self.run(name, monoport_argv(self.env, self.port, "--reuse-port", "--instance-id", name,
                                         "--redis", f"redis://127.0.0.1:{redis_port}/0"))

    def disrupt(self) -> None:
        """SIGTERM instance a (it drains: its Socket.IO clients reconnect to b); returns when a has exited."""
        first = self.procs[1]
        first.send_signal(signal.SIGTERM)
        try:
            first.wait(STOP_GRACE + 5)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait()


class Bare(Target):
    flags: tuple[str, ...] = ()

    def launch(self) -> None:
        self.run("app", [self.env.python, "-m", "bench.backend", *self.flags, str(self.port), self.env.cert,
                         self.env.key])


class BareNoDelay(Bare):
    flags = ("--nodelay",)


class MonoportHello(Target):
    """monoport serving :func:`bench.hello.wsgi` (no Flask, no Socket.IO)."""

    only = ("keepalive",)

    def launch(self) -> None:
        argv = monoport_argv(self.env, self.port)
        argv[argv.index("bench.app:app")] = "bench.hello:wsgi"
        if not self.tls:
            i = argv.index("--cert")
            del argv[i:i + 4]
            argv += ["--tls", "off"]
        self.run("monoport", argv)


class MonoportHelloClear(MonoportHello):
    tls = False


class BareNoDelayHello(Target):
    """pywsgi (Nagle off) serving :func:`bench.hello.wsgi`: monoport's bookkeeping is the difference."""

    only = ("keepalive",)

    def launch(self) -> None:
        tls = [self.env.cert, self.env.key] if self.tls else []
        self.run("app", [self.env.python, "-m", "bench.backend", "--nodelay", "--app", "bench.hello:wsgi",
                         str(self.port), *tls])


class BareNoDelayHelloClear(BareNoDelayHello):
    tls = False


def uvicorn_argv(env: Env, port: int, app: str, tls: bool = True) -> list[str]:
    """uvicorn as installed by ``uvicorn[standard]``: it picks uvloop, httptools and websockets itself.

    ``--ssl-keyfile``/``--ssl-certfile`` build one SSLContext at start;
    asyncio sets TCP_NODELAY on every TCP transport. Warnings only, as monoport.
    """
    argv = [env.python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--backlog", "2048"]
    return argv + (["--ssl-keyfile", env.key, "--ssl-certfile", env.cert] if tls else [])


class Uvicorn(Target):
    def launch(self) -> None:
        self.run("uvicorn", uvicorn_argv(self.env, self.port, "bench.asgi_app:app"))


class UvicornHello(Target):
    """uvicorn serving :func:`bench.hello.asgi` (no Starlette, no Socket.IO)."""

    only = ("keepalive",)

    def launch(self) -> None:
        self.run("uvicorn", uvicorn_argv(self.env, self.port, "bench.hello:asgi", self.tls))


class UvicornHelloClear(UvicornHello):
    tls = False


HAPROXY_CLASSIC = """\
global
    maxconn 9000
defaults
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
frontend public
    bind 127.0.0.1:{front}
    mode tcp
    tcp-request inspect-delay 500ms
    tcp-request content accept if HTTP
    use_backend sio if {{ path_beg /socket.io }}
    default_backend web
backend web
    mode http
    option http-server-close
    option forwardfor
    server web1 127.0.0.1:{web} maxconn 9000
backend sio
    mode http
    option http-server-close
    option forwardfor
    server sio1 127.0.0.1:{sio} maxconn 9000
"""

STUNNEL = """\
foreground = yes
pid =
debug = warning
[https]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{front}
cert = {cert}
key = {key}
"""


class Stack(Target):
    def launch(self) -> None:
        env = self.env
        web, sio = self.backends()
        front = free_port()
        cfg = env.write("haproxy-classic.cfg", HAPROXY_CLASSIC.format(front=front, web=web, sio=sio))
        self.run("haproxy", [haproxy(), "-db", "-f", cfg])
        conf = env.write("stunnel.conf", STUNNEL.format(port=self.port, front=front, cert=env.cert, key=env.key))
        self.run("stunnel", [stunnel(), conf])


NGINX = """\
worker_processes 1;
worker_rlimit_nofile {nofile};
user root;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 9000; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    upstream web {{ server 127.0.0.1:{web}; keepalive 64; }}
    upstream sio {{ server 127.0.0.1:{sio}; keepalive 64; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_session_cache shared:SSL:10m;
        ssl_session_timeout 1d;
        location /socket.io/ {{
            proxy_pass http://sio;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1h;
        }}
        location / {{
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class Nginx(Target):
    def launch(self) -> None:
        env = self.env
        web, sio = self.backends()
        conf = env.write("nginx.conf", NGINX.format(nofile=nofile_limit(), tmp=env.tmp, web=web, sio=sio, port=self.port,
                                                    cert=env.cert, key=env.key))
        self.run("nginx", [nginx(), "-p", str(env.tmp), "-c", conf])


#: the keep-alive split: bare callables over TLS and in clear text
SPLIT_TARGETS = {"monoport-hello": MonoportHello, "monoport-hello-clear": MonoportHelloClear,
                 "pywsgi-hello": BareNoDelayHello, "pywsgi-hello-clear": BareNoDelayHelloClear,
                 "uvicorn-hello": UvicornHello, "uvicorn-hello-clear": UvicornHelloClear}
TARGETS = {"monoport": Monoport, "stack": Stack, "nginx": Nginx, "bare": Bare, "bare-nodelay": BareNoDelay,
           "uvicorn": Uvicorn, **SPLIT_TARGETS, "monoport-w2": MonoportWorkers, "monoport-recovery": MonoportRecovery}
#: what ``python -m bench`` runs without --targets (monoport-w2 and monoport-recovery are asked for by name)
DEFAULT_TARGETS = ["monoport", "stack", "nginx", "bare", "bare-nodelay", "uvicorn", *SPLIT_TARGETS]


# -- raw TCP forwarders ---------------------------------------------------------
HAPROXY_TCP = """\
global
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
frontend raw
    bind 127.0.0.1:{port}
    option splice-auto
    default_backend sink
backend sink
    option splice-auto
    server sink1 127.0.0.1:{sink}
"""


class RawTarget(Target):
    """A forwarder in front of :mod:`bench.sink` (ready when a byte comes back)."""

    def launch(self) -> None:
        self.sink = free_port()
        self.run("sink", [self.env.python, "-m", "bench.sink", str(self.sink)])
        self.forwarder()

    def pids(self) -> list[int]:
        """The forwarder's processes only: the sink is the same for every forwarder."""
        sink = self.procs[0].pid if self.procs else None
        return [pid for pid in super().pids() if pid != sink]

    def probe(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(b"\x02ping")
                return s.recv(4) == b"ping"
        except OSError:
            return False


class MonoportRaw(RawTarget):
    def forwarder(self) -> None:
        self.run("monoport", monoport_argv(self.env, self.port, "--raw", f"127.0.0.1:{self.sink}"))


class HaproxyRaw(RawTarget):
    def forwarder(self) -> None:
        cfg = self.env.write("haproxy-tcp.cfg", HAPROXY_TCP.format(port=self.port, sink=self.sink))
        self.run("haproxy", [haproxy(), "-db", "-f", cfg])


RAW_TARGETS = {"monoport": MonoportRaw, "haproxy": HaproxyRaw}
#: the reconnect storm: monoport drains to a peer, the others restart (stack and nginx: not measured)
STORM_TARGETS = {"monoport": MonoportPair, "bare-nodelay": BareNoDelay, "uvicorn": Uvicorn}


def monoport_has_forward(env: Env) -> bool:
    """Whether this monoport build can splice raw TCP (``--raw HOST:PORT``)."""
    probe = subprocess.run([env.python, "-m", "monoport", "--app", "bench.app:app", "--tls", "off", "--raw",
                            "127.0.0.1:9", "--bind", f"127.0.0.1:{free_port()}", "--check"],
                           cwd=env.root, capture_output=True)
    return probe.returncode == 0


def nofile_limit() -> int:
    """The file limit a started process gets (NOFILE, or the hard limit if lower)."""
    return min(NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def haproxy() -> str:
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


def redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server is missing (scripts/system-deps.sh installs it)")
    return path


def stunnel() -> str:
    return shutil.which("stunnel4") or shutil.which("stunnel") or "/usr/bin/stunnel4"


def nginx() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"
