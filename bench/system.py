"""What the bench needs from the machine, and what it says about the machine.

:func:`ensure_packages` installs the Debian packages of the other targets
and of the HTTP load client when one is missing (a fresh CI machine), as root
or through sudo. :func:`machine` is the header of the summary: the numbers
mean nothing without the machine and the date they came from.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata

#: Debian package -> a command it provides.
PACKAGES = {"stunnel4": "stunnel4", "haproxy": "haproxy", "nginx": "nginx", "wrk": "wrk"}


def ensure_packages() -> None:
    missing = [pkg for pkg, cmd in PACKAGES.items() if not shutil.which(cmd) and not os.path.exists(f"/usr/sbin/{cmd}")]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print(f"bench: installing {' '.join(missing)}", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True,
                   env=env, stdout=subprocess.DEVNULL)


def pin_plan(cpus: set[int]) -> tuple[set[int], set[int]]:
    """(load generators' CPUs, targets' CPUs): the lowest CPU for the clients, the next for the target.

    On 2 shared cores, wrk busy-polls while a TLS handshake is pending, so a
    client on the target's core takes CPU from the server it measures. One
    CPU alone cannot be split: then both get it (and the summary says so).
    """
    ordered = sorted(cpus)
    if len(ordered) < 2:
        return set(ordered), set(ordered)
    return {ordered[0]}, {ordered[1]}


def pin_self() -> tuple[set[int], set[int]]:
    """Pin this process (and so the load generators it starts) to the clients' CPU; returns the plan."""
    clients, targets = pin_plan(os.sched_getaffinity(0))
    os.sched_setaffinity(0, clients)
    return clients, targets


def _tool_version(argv: list[str], pattern: str, name: str = "") -> str:
    """``name x.y.z`` from a tool's version output (``name``: the command's own name unless given)."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return f"{name or argv[0]} ?"
    found = re.search(pattern, proc.stdout + proc.stderr)
    return f"{name or os.path.basename(argv[0])} {found.group(1) if found else '?'}"


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {name: _version(name) for name in ("gevent", "gevent-websocket", "python-socketio", "python-engineio",
                                                "starlette", "uvloop", "httptools", "Flask")}
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GB RAM, Linux {platform.release()}",
        "load": "load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "software": (f"Python {platform.python_version()}, "
                     + ", ".join(f"{k} {v}" for k, v in versions.items())
                     + "; " + ", ".join([
                         _tool_version(["haproxy", "-v"], r"version (\S+)"),
                         _tool_version(["nginx", "-v"], r"nginx/(\S+)"),
                         _tool_version(["stunnel4", "-version"], r"stunnel (\S+)"),
                         _tool_version(["wrk", "-v"], r"wrk (\S+)"),
                         _tool_version([sys.executable, "-m", "uvicorn", "--version"], r"uvicorn (\S+)", "uvicorn"),
                         _tool_version(["openssl", "version"], r"OpenSSL (\S+)"),
                     ])),
        "python": sys.executable,
        "commit": _commit(),
    }


def _commit() -> str:
    """The git commit the numbers belong to (a dirty tree says so)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (head or "?") + (" (with uncommitted changes)" if dirty else "")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"
