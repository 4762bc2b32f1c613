"""``monoport --check`` (``--check-config``): build everything, serve nothing.

Like ``haproxy -c``: the whole configuration is built as a real start would
build it -- certificates load, the app and its Socket.IO server import, the
access log opens, every port binds -- then everything is let go again.
Exit 0 with a one-line summary on stdout, or exit 2 with one line on stderr
naming what is wrong.

Beyond building, two checks add a fragment to the summary, called here by
name and in this order: the cluster's (Redis answers, and which instances
of this cluster it announces: :func:`monoport.cluster.check_redis`) and the
automatic HTTPS one (:func:`check_acme`: which names, from which CA). Each
gets the built, bound Runtime and returns a short fragment or None, and
raises ConfigError naming the flag when something is wrong.
"""

from __future__ import annotations

import sys
from typing import Any

from ..config import Config
from ..eioconform import describe_pings
from ..errors import ConfigError


def report_error(error: BaseException) -> int:
    """The one line --check prints for a bad configuration; exit code 2."""
    what = str(error) if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}"
    print(f"monoport: configuration error: {what}", file=sys.stderr)
    return 2


def check_acme(runtime: Any) -> str | None:
    """``--check``'s summary fragment: which names, from which CA (nothing is ordered by a check)."""
    manager = getattr(runtime, "acme", None)
    if manager is None:
        return None
    names = "; ".join(",".join(m.names) for m in manager.certs)
    return f"acme {names} from {manager.directory_url}"


def run(config: Config) -> int:
    """Check ``config``; print the verdict. Returns the exit code (0 good, 2 bad)."""
    # imported here, not at the top: the command line's error path imports
    # this module for report_error alone and need not load the whole server
    from ..cluster import check_redis
    from ..runtime import Runtime

    runtime = None
    try:
        runtime = Runtime.build(config)
        runtime.bind()
        extra = [fragment for check in (check_redis, check_acme) if (fragment := check(runtime))]
    except Exception as exc:  # ConfigError, or an app that fails on import: one line, no traceback
        return report_error(exc)
    finally:
        if runtime is not None:
            for listener in runtime.listeners:
                listener.close()
            if runtime.access is not None:
                runtime.access.close()
    ports = ", ".join(f"{h}:{p}" for h, p in config.bind)
    parts = [f"app {runtime.loaded.description}", f"listen {ports}", f"tls {'on' if runtime.certs else 'off'}",
             f"raw {config.raw}", f"instance {config.instance_id}", f"cluster {config.cluster_name}", *extra]
    if runtime.sio is not None:
        parts.append(describe_pings(runtime.sio.eio))
    print("monoport: configuration OK: " + ", ".join(parts))
    return 0
