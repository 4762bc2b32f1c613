"""Finding the app and its Socket.IO server, and refusing a server not in gevent mode."""

from __future__ import annotations

import subprocess
import sys

import pytest

from monoport import appload
from monoport.errors import ConfigError
from tests.conftest import ROOT


def test_plain_socketio_server_is_found_as_the_modules_sio():
    loaded = appload.load("tests.apps.echo_app:app", None)
    assert loaded.sio is not None and loaded.flask_app is not None


def test_flask_socketio_server_is_found_in_the_apps_extensions():
    loaded = appload.load("tests.apps.fsio_app:app", None)
    assert loaded.sio is loaded.flask_app.extensions["socketio"].server


@pytest.mark.parametrize("spec,flag", [("no_such_module:app", "--app"), ("tests.apps.echo_app:nope", "--app")])
def test_bad_app_paths_name_the_flag(spec, flag):
    with pytest.raises(ConfigError) as info:
        appload.load(spec, None)
    assert info.value.flag == flag


def test_server_not_in_gevent_mode_is_refused_with_one_line_saying_how_to_fix():
    proc = subprocess.run([sys.executable, "-m", "monoport", "--app", "tests.apps.threading_app", "--tls", "off",
                           "--bind", "127.0.0.1:0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "async_mode 'threading'" in last and "async_mode='gevent'" in last
    assert "Traceback" not in proc.stderr


def test_start_line_names_async_mode_and_websocket_library(monoport):
    server = monoport(["--app", "tests.apps.echo_app:app", "--tls", "off"])
    log = server.log()
    assert "async_mode=gevent" in log and "websocket=gevent-websocket" in log
