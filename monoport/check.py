"""``monoport --check`` (``--check-config``): build everything, serve nothing.

Like ``haproxy -c``: the whole configuration is built as a real start would
build it -- certificates load, the app and its Socket.IO server import, the
access log opens, every port binds -- then everything is let go again.
Exit 0 with a one-line summary on stdout, or exit 2 with one line on stderr
naming what is wrong.

Other modules add checks by appending to :data:`CHECKS` (the scale-out code
checks that Redis answers): a hook gets the built, bound Runtime and returns
a short summary fragment ("redis ok") or None, and raises ConfigError
naming the flag when something is wrong.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from .config import Config
from .errors import ConfigError

#: extra checks run after the runtime is built and bound: (runtime) -> summary fragment | None
CHECKS: list[Callable[[Any], str | None]] = []


def report_error(error: BaseException) -> int:
    """The one line --check prints for a bad configuration; exit code 2."""
    what = str(error) if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}"
    print(f"monoport: configuration error: {what}", file=sys.stderr)
    return 2


def run(config: Config) -> int:
    """Check ``config``; print the verdict. Returns the exit code (0 good, 2 bad)."""
    from .runtime import Runtime

    runtime = None
    try:
        runtime = Runtime.build(config)
        runtime.bind()
        extra = [fragment for hook in CHECKS if (fragment := hook(runtime))]
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
    print("monoport: configuration OK: " + ", ".join(parts))
    return 0
