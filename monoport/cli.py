"""The command line: parse, build, run. ``main(argv) -> exit code``."""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Mapping, Sequence

from .config_sources import build_parser, from_sources
from .errors import ConfigError

log = logging.getLogger("monoport")

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)


def lean_greenlets(environ: Mapping[str, str]) -> None:
    """Stop gevent recording who spawned each greenlet, unless ``GEVENT_TRACK_GREENLET_TREE`` says otherwise.

    gevent's default keeps, for every Greenlet, its spawner, a dict shared
    along the spawn tree and the spawner's ten innermost frames: a debugging
    aid that costs about 5 KB per idle Socket.IO WebSocket (three greenlets
    each: the connection's, python-engineio's writer and its pinger) and that
    nothing in monoport reads. An operator who wants it back sets the
    variable, which gevent reads itself.
    """
    if "GEVENT_TRACK_GREENLET_TREE" not in environ:
        import gevent

        gevent.config.track_greenlet_tree = False


def freeze_loaded_objects() -> int:
    """Take everything loaded so far (monoport, the app, their imports) out of the garbage collector's sight.

    The objects built before serving live as long as the process, yet every
    full collection walks all of them again: in the bench's Flask and
    Socket.IO app some 60 000, tens of milliseconds during which no request
    moves (a keep-alive tail). ``gc.freeze()`` after loading is what
    gunicorn's and uvicorn's users do with preloaded apps; garbage from the
    build is collected first, so none of it is kept for good.

    Returns:
        how many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def fail(error: ConfigError) -> int:
    """argparse's usage line plus one line naming the flag and why; exit 2."""
    parser = build_parser()
    parser.print_usage(sys.stderr)
    print(f"monoport: error: {error}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config, ns = from_sources(argv, os.environ)
    except ConfigError as exc:
        args = sys.argv[1:] if argv is None else argv
        if "--check" in args or "--check-config" in args:
            from .ops.check import report_error

            return report_error(exc)  # one line, like the rest of --check
        return fail(exc)
    setup_logging(config.log_level)
    lean_greenlets(os.environ)
    for note in getattr(ns, "notes", ()):
        log.warning("%s", note)
    if getattr(ns, "check", False):
        from .ops.check import run as check

        return check(config)
    if config.workers > 1:
        from .workers import Master

        return Master(config, list(sys.argv[1:] if argv is None else argv)).run()
    from .runtime import Runtime

    try:
        runtime = Runtime.build(config)
        runtime.bind()
    except ConfigError as exc:
        return fail(exc)
    log.debug("%d objects of the loaded app frozen out of garbage collection", freeze_loaded_objects())
    return runtime.run()
