"""Config: one declaration, env < flags, gunicorn-style aliases, bad values exit 2 naming the flag."""

from __future__ import annotations

import subprocess
import sys

import pytest

from monoport.config import Config
from monoport.config_sources import from_sources
from monoport.errors import ConfigError
from tests.conftest import ROOT


def test_defaults():
    config, _ = from_sources([], {})
    assert config.bind == (("127.0.0.1", 8443),)
    assert config.sniff_timeout == 2.0 and config.plain == "redirect" and config.tls == "auto"
    assert len(config.instance_id) == 4


def test_port_from_environment_binds_all_interfaces():
    config, _ = from_sources([], {"PORT": "5000"})
    assert config.bind == (("0.0.0.0", 5000),)


def test_flags_override_environment_and_aliases_work():
    config, _ = from_sources(["-b", "127.0.0.1:9000", "--forwarded-allow-ips", "10.0.0.0/8"],
                             {"MONOPORT_BIND": "127.0.0.1:1", "MONOPORT_SNIFF_TIMEOUT": "0.5"})
    assert config.bind == (("127.0.0.1", 9000),)
    assert config.sniff_timeout == 0.5
    assert config.trusted_proxy == ("10.0.0.0/8",)


def test_repeatable_env_values_split_on_commas():
    config, _ = from_sources([], {"MONOPORT_BIND": "127.0.0.1:1,127.0.0.1:2", "FORWARDED_ALLOW_IPS": "127.0.0.1"})
    assert config.bind == (("127.0.0.1", 1), ("127.0.0.1", 2))
    assert config.trusted_proxy == ("127.0.0.1/32",)


@pytest.mark.parametrize("argv,flag", [
    (["--sniff-timeout", "-1"], "--sniff-timeout"),
    (["--bind", "nope"], "--bind"),
    (["--cert", "/nonexistent.pem", "--key", "/nonexistent.key"], "--cert"),
    (["--cert", "a.pem"], "--cert"),
    (["--instance-id", "UPPER"], "--instance-id"),
])
def test_bad_values_name_the_flag(argv, flag):
    with pytest.raises(ConfigError) as info:
        from_sources(argv, {})
    assert info.value.flag == flag


def test_bad_value_on_the_command_line_exits_2_with_usage_and_one_line():
    proc = subprocess.run([sys.executable, "-m", "monoport", "--sniff-timeout", "zero"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("usage: monoport")
    assert "--sniff-timeout" in lines[-1]
    assert "Traceback" not in proc.stderr


def test_every_option_has_help_and_a_canonical_flag():
    import dataclasses

    for f in dataclasses.fields(Config):
        assert f.metadata["flags"][0].startswith("--")
        assert f.metadata["help"]
