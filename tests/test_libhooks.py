"""Every private hook into a library is listed once, present in the installed version, and bounded."""

from __future__ import annotations

import re

import pytest

from monoport import libhooks
from monoport.errors import ConfigError
from tests.conftest import ROOT


def test_every_listed_hook_is_present_in_the_installed_libraries():
    assert [hook.target for hook in libhooks.missing()] == []


def test_every_hooked_library_has_an_upper_bound_in_requirements():
    requirements = (ROOT / "requirements.txt").read_text()
    for library in libhooks.CHECKED:
        line = next(line for line in requirements.splitlines() if re.match(rf"{re.escape(library)}\s*[<>=]", line))
        assert "<" in line.split("#")[0], line


def test_every_hook_names_a_checked_library_and_a_monoport_module():
    modules = {path.stem for path in (ROOT / "monoport").glob("*.py")}
    for hook in libhooks.HOOKS:
        assert hook.library in libhooks.CHECKED, hook
        assert hook.used_by in modules, hook


def test_modules_that_silence_the_type_checker_on_a_library_name_are_listed_users_of_hooks():
    # A private library name the stubs do not declare needs an ignore; each such module is in the list.
    users = {hook.used_by for hook in libhooks.HOOKS}
    silenced = set()
    for path in (ROOT / "monoport").rglob("*.py"):
        for line in path.read_text().splitlines():
            if re.search(r"type: ignore\[[^\]]*(attr-defined|misc)", line):
                silenced.add(path.stem)
    assert silenced and silenced <= users


def test_start_is_refused_naming_the_hook_when_a_library_lost_one(monkeypatch):
    from engineio import socket as eio_socket

    monkeypatch.delattr(eio_socket.Socket, "schedule_ping")
    with pytest.raises(ConfigError) as refused:
        libhooks.require()
    message = str(refused.value)
    assert "engineio.socket:Socket.schedule_ping" in message
    assert "checked with 4.15.1" in message and "monoport.eioconform" in message
