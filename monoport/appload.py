"""Find the user's WSGI app and Socket.IO server, as gunicorn and Flask-SocketIO users expect.

``--app module:attr`` names a Flask app, any WSGI callable, a
``socketio.WSGIApp``, or (``--app module``) a module holding one of them as
``app`` or ``application``. The Socket.IO server is ``--sio module:attr``,
else a Flask-SocketIO app's ``app.extensions['socketio'].server``, else the
module's ``sio``. Whatever is found must run in gevent mode.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from .config import DEFAULT_APP_SPEC as DEFAULT_APP
from .errors import ConfigError


@dataclass
class Loaded:
    wsgi: Callable
    sio: Any  # socketio.Server | None
    flask_app: Any  # flask.Flask | None
    description: str


def _import(spec: str, flag: str) -> tuple[ModuleType, Any]:
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError(flag, f"cannot import module {module_name!r}") from None
        raise ConfigError(flag, f"importing {module_name!r} failed: {exc}") from None
    if not attr:
        return module, None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(flag, f"module {module_name!r} has no attribute {attr!r}") from None
    return module, obj


def _findable(module_name: str) -> bool:
    """True if the module exists (an error inside it must still be reported)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    return importlib.util.find_spec(module_name) is not None


def _is_flask(obj: Any) -> bool:
    return hasattr(obj, "wsgi_app") and hasattr(obj, "extensions") and hasattr(obj, "route")


def load(app_spec: str | None, sio_spec: str | None) -> Loaded:
    """Import the app and find its Socket.IO server.

    Raises:
        ConfigError: naming --app or --sio, for anything that cannot be used.
    """
    import socketio

    if app_spec is None:
        if _findable(DEFAULT_APP):
            module, obj = _import(DEFAULT_APP, "--app")
        else:
            from . import builtin_app

            module, obj = builtin_app, None
        app_spec = module.__name__
    else:
        module, obj = _import(app_spec, "--app")
    if obj is None:
        obj = getattr(module, "app", None) or getattr(module, "application", None)
        if obj is None:
            raise ConfigError("--app", f"module {module.__name__!r} has no `app` or `application`")
    sio = None
    if isinstance(obj, socketio.WSGIApp):
        sio = obj.engineio_app
        obj = obj.wsgi_app or _not_found
    if not callable(obj):
        raise ConfigError("--app", f"{app_spec!r} is not a WSGI application")
    flask_app = obj if _is_flask(obj) else None
    if sio_spec:
        _, sio = _import(sio_spec, "--sio")
        if sio is None:
            raise ConfigError("--sio", "expected module:attr")
    elif sio is None and flask_app is not None and "socketio" in flask_app.extensions:
        sio = flask_app.extensions["socketio"].server
    elif sio is None:
        sio = getattr(module, "sio", None)
    if sio is not None:
        if hasattr(sio, "server") and not hasattr(sio, "eio"):  # a Flask-SocketIO object
            sio = sio.server
        if not isinstance(sio, socketio.Server):
            raise ConfigError("--sio", f"{type(sio).__name__} is not a socketio.Server")
        mode = sio.async_mode
        if mode != "gevent":
            raise ConfigError(
                "--sio",
                f"the Socket.IO server runs in async_mode {mode!r}; monoport needs 'gevent': "
                "create it with socketio.Server(async_mode='gevent') or "
                "SocketIO(app, async_mode='gevent') (eventlet is picked first when installed)",
            )
    return Loaded(wsgi=obj, sio=sio, flask_app=flask_app, description=app_spec)


def _not_found(environ: dict, start_response: Callable) -> list[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"Not Found"]
