"""``monoport --check``: exit 0 with a summary on a good config, 2 naming the fault otherwise."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.conftest import ROOT, free_port

APP = ["--app", "tests.apps.echo_app:app"]


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monoport", "--check", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def test_good_config_exits_0_with_a_one_line_summary(tls_args, tmp_path):
    port = free_port()
    done = check(*APP, *tls_args, "--bind", f"127.0.0.1:{port}", "--access-log", str(tmp_path / "a.log"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("monoport: configuration OK:")
    assert f"127.0.0.1:{port}" in done.stdout and "tls on" in done.stdout
    with socket.socket() as again:  # --check let the port go again
        again.bind(("127.0.0.1", port))


def test_check_config_is_an_alias():
    done = subprocess.run([sys.executable, "-m", "monoport", "--check-config", *APP, "--tls", "off",
                           "--bind", f"127.0.0.1:{free_port()}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "configuration OK" in done.stdout


def test_missing_certificate_exits_2_naming_it(tmp_path):
    missing = str(tmp_path / "nope.pem")
    done = check(*APP, "--cert", missing, "--key", missing, "--bind", f"127.0.0.1:{free_port()}")
    assert done.returncode == 2 and "--cert" in done.stderr and "nope.pem" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("monoport: configuration error: --cert")
    assert "usage:" not in done.stderr and "Traceback" not in done.stderr


def test_unreadable_certificate_exits_2(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    done = check(*APP, "--cert", str(bad), "--key", str(bad), "--bind", f"127.0.0.1:{free_port()}")
    assert done.returncode == 2 and "configuration error: --cert" in done.stderr


def test_bad_app_path_exits_2_naming_it():
    done = check("--app", "no_such_module_here:app", "--tls", "off", "--bind", f"127.0.0.1:{free_port()}")
    assert done.returncode == 2 and "--app" in done.stderr and "no_such_module_here" in done.stderr
    done = check("--app", "tests.apps.echo_app:nothing", "--tls", "off", "--bind", f"127.0.0.1:{free_port()}")
    assert done.returncode == 2 and "nothing" in done.stderr and "Traceback" not in done.stderr


def test_app_that_fails_on_import_exits_2_without_traceback(tmp_path):
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('database url missing')\n")
    done = subprocess.run([sys.executable, "-m", "monoport", "--check", "--app", "broken_app:app", "--tls", "off",
                           "--bind", f"127.0.0.1:{free_port()}"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "database url missing" in done.stderr and "Traceback" not in done.stderr


def test_port_in_use_exits_2_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = check(*APP, "--tls", "off", "--bind", f"127.0.0.1:{port}")
    assert done.returncode == 2 and "--bind" in done.stderr and f"127.0.0.1:{port}" in done.stderr
