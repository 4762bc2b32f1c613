"""Config from its sources (defaults < environment < command line), then the checks across options.

The argparse CLI and the environment reader are generated from the option
declarations in :mod:`monoport.config`; this is the one place a Config is
built from the outside world, and :func:`validate` makes the checks that no
single value parser can.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import string
from typing import Any, Mapping, Sequence

from .config import Config, env_names, options
from .config_values import LETSENCRYPT_PRODUCTION, parse_port
from .errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monoport",
        description="One port for TLS, HTTP, WebSocket, Socket.IO, Flash policy and raw TCP.",
        argument_default=argparse.SUPPRESS,
    )
    for f in options():
        meta = f.metadata
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
        if meta["switch"]:
            kwargs["action"] = "store_true"
        else:
            kwargs["action"] = "append" if meta["repeat"] else "store"
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
        parser.add_argument(*meta["flags"], **kwargs)
    parser.add_argument("--check", "--check-config", dest="check", action="store_true",
                        help="build the whole configuration, print a summary and exit (0 good, 2 bad)")
    parser.add_argument("--version", action="version", version=_version())
    return parser


def _version() -> str:
    from . import __version__

    return f"monoport {__version__}"


def _convert(f: dataclasses.Field, raw: Any) -> Any:
    meta = f.metadata
    flag = meta["flags"][0]
    if meta["switch"]:
        if isinstance(raw, bool):
            return raw
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(flag, f"expected true or false, got {raw!r}")
    items = raw if isinstance(raw, list) else [raw]
    values = []
    for item in items:
        if meta["choices"] and item not in meta["choices"]:
            raise ConfigError(flag, f"expected one of {', '.join(meta['choices'])}, got {item!r}")
        try:
            values.append(meta["parse"](item))
        except ValueError as exc:
            raise ConfigError(flag, str(exc)) from None
    return tuple(values) if meta["repeat"] else values[0]


def from_sources(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> tuple[Config, argparse.Namespace]:
    """Build the Config from defaults < environment < command line.

    Raises:
        ConfigError: a value is wrong (argparse itself exits 2 on unknown flags).
    """
    environ = os.environ if environ is None else environ
    ns = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    for f in options():
        for name in env_names(f):
            if environ.get(name) not in (None, ""):
                raw: str | list[str] = environ[name]
                if f.metadata["repeat"]:
                    raw = [part for part in environ[name].replace(",", " ").split() if part]
                values[f.name] = _convert(f, raw)
                break
        if hasattr(ns, f.name):
            values[f.name] = _convert(f, getattr(ns, f.name))
    port = environ.get("PORT")
    if port and "bind" not in values:
        try:
            values["bind"] = (("0.0.0.0", parse_port(port)),)
        except ValueError:
            raise ConfigError("PORT", f"expected a port number, got {port!r}") from None
    notes: list[str] = []
    concurrency = environ.get("WEB_CONCURRENCY")
    if concurrency and "workers" not in values:
        if values.get("redis"):
            values["workers"] = _convert(_field("workers"), concurrency)
        else:
            notes.append(f"WEB_CONCURRENCY={concurrency} ignored without Redis (--redis or REDIS_URL): "
                         "running one worker, since broadcasts would miss clients of the others")
    ns.notes = notes
    if not values.get("instance_id"):
        values["instance_id"] = random_instance_id()
    config = Config(**values)
    validate(config, environ)
    return config, ns


def _field(name: str) -> dataclasses.Field:
    return next(f for f in options() if f.name == name)


def validate(config: Config, environ: Mapping[str, str]) -> None:
    """Cross-field checks that no single parser can make."""
    if not config.redis:
        # Without a shared message bus an emit reaches only this process's
        # clients: refusing is better than silently missing broadcasts.
        if config.peer:
            raise ConfigError("--peer", "peers need --redis (or REDIS_URL), or emits to rooms miss other instances' clients")
        if config.workers > 1:
            raise ConfigError("--workers", "more than one worker needs --redis (or REDIS_URL), "
                              "or emits to rooms miss other workers' clients")
    if len(config.cert) != len(config.key):
        raise ConfigError("--cert", "every --cert needs a --key at the same position")
    for path in config.cert + config.key:
        if not os.path.isfile(path):
            flag = "--cert" if path in config.cert else "--key"
            raise ConfigError(flag, f"no such file: {path}")
    if config.acme:
        if config.tls == "off":
            raise ConfigError("--acme", "needs TLS; drop --tls off")
        if config.acme_directory == LETSENCRYPT_PRODUCTION and not config.acme_agree_tos:
            raise ConfigError("--acme", "Let's Encrypt's production CA needs --acme-agree-tos "
                              "(its terms: https://letsencrypt.org/repository/)")
        if config.acme_ca_bundle and not os.path.isfile(config.acme_ca_bundle):
            raise ConfigError("--acme-ca-bundle", f"no such file: {config.acme_ca_bundle}")
    if config.flash_policy and not os.path.isfile(config.flash_policy):
        raise ConfigError("--flash-policy", f"no such file: {config.flash_policy}")


def random_instance_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4))
