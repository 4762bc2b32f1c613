"""Pebble (Let's Encrypt's ACME test server) and pebble-challtestsrv as test fixtures.

Debian's ``pebble`` package ships both binaries but no certificate for
Pebble's own HTTPS: the test makes one with trustme. pebble-challtestsrv is
only the DNS server, answering every A query with 127.0.0.1 (no AAAA, and
none of its own challenge ports). Pebble's validation ports point at the
monoport under test. Its issuing root is new at every start; tests fetch it
from the management port (``/roots/0``).
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

import trustme

from tests.conftest import free_ports, stop_process, wait_started

#: Pebble's own knobs: no random validation sleeps, no rejected nonces, no reused authorizations.
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
#: how long Pebble and challtestsrv get to answer after start
START_TIMEOUT = 15.0


def _binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run scripts/system-deps.sh (Debian package pebble)"
    return path


class ChallTestSrv:
    """pebble-challtestsrv as the DNS server only: every name is 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.dns_port, self.management_port = free_ports(2)
        self.log = workdir / "challtestsrv.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ChallTestSrv":
        cmd = [_binary("pebble-challtestsrv"), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
               "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "", "-tlsalpn01", "",
               "-management", f"127.0.0.1:{self.management_port}"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        wait_started(self.proc, lambda: "Starting management server" in self.log.read_text(), START_TIMEOUT,
                     "pebble-challtestsrv", lambda: self.log.read_text(errors="replace"))
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)


class Pebble:
    """One Pebble whose validator connects to ``tls_port`` (TLS-ALPN-01) and ``http_port`` (HTTP-01)."""

    def __init__(self, workdir: Path, dns_port: int, tls_port: int, http_port: int,
                 validity: int | None = None) -> None:
        self.workdir = workdir
        self.dns_port = dns_port
        self.port, self.management_port = free_ports(2)
        while {self.port, self.management_port} & {tls_port, http_port}:  # bound by others later: keep apart
            self.port, self.management_port = free_ports(2)
        self.log = workdir / f"pebble-{self.port}.log"
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_bundle = workdir / "pebble-https-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_bundle))
        cert.cert_chain_pems[0].write_to_path(str(workdir / "pebble-https.pem"))
        cert.private_key_pem.write_to_path(str(workdir / "pebble-https.key"))
        settings = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(workdir / "pebble-https.pem"), "privateKey": str(workdir / "pebble-https.key"),
            "httpPort": http_port, "tlsPort": tls_port, "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if validity is not None:
            settings["certificateValidityPeriod"] = validity
        self.config = workdir / f"pebble-{self.port}.json"
        self.config.write_text(json.dumps({"pebble": settings}))
        self.proc: subprocess.Popen | None = None

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _https(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def start(self) -> "Pebble":
        import os

        env = dict(os.environ, **PEBBLE_ENV)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([_binary("pebble"), "-config", str(self.config),
                                          "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                                         stdout=out, stderr=subprocess.STDOUT, env=env)
        wait_started(self.proc, self._answers, START_TIMEOUT, "pebble", lambda: self.log.read_text(errors="replace"))
        return self

    def _answers(self) -> bool:
        with urllib.request.urlopen(self.directory, context=self._https(), timeout=2) as answer:
            return answer.status == 200

    def root(self) -> str:
        """Pebble's issuing root (PEM), from its management port."""
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=self._https(), timeout=5) as answer:
            return answer.read().decode()

    def client_context(self) -> ssl.SSLContext:
        """A client that trusts Pebble's root, and nothing else."""
        return ssl.create_default_context(cadata=self.root())

    def orders(self) -> int:
        """How many new-order requests Pebble has seen."""
        return self.log.read_text(errors="replace").count("POST /order-plz")

    def args(self) -> list[str]:
        """monoport's flags to use this Pebble."""
        return ["--acme-directory", self.directory, "--acme-ca-bundle", str(self.ca_bundle)]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
