"""The README documents every metric and every termination reason the code can emit."""

from __future__ import annotations

from monoport.ops.accesslog import FIELDS
from monoport.connection import TERMINATION_REASONS, termination_of
from monoport.ops.metrics import METRICS
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
OPERATIONS = README[README.index("## Operations"):]


def test_every_metric_name_is_in_the_readme():
    for name in METRICS:
        assert f"`{name}`" in OPERATIONS, name


def test_every_termination_reason_and_log_field_is_in_the_readme():
    for reason in TERMINATION_REASONS:
        assert f"`{reason}`" in OPERATIONS, reason
    assert " ".join(f'"{f}"' if f in ("request", "detail") else f for f in FIELDS) in OPERATIONS


def test_outcome_texts_map_onto_the_documented_reasons():
    assert termination_of("client closed (keep-alive)") == "client_closed"
    assert termination_of("connection error (ConnectionResetError: reset)") == "client_aborted"
    assert termination_of("client timeout (request head)") == "client_timeout"
    assert termination_of("sniff timeout (silent client); raw TCP is off") == "sniff_timeout"
    assert termination_of("TLS handshake failed (timeout)") == "tls_failed"
    assert termination_of("protocol error (engine.io: bad packet)") == "protocol_error"
    assert termination_of("closed after response") == "server_closed"
    assert termination_of("draining") == "draining"
    assert termination_of("raw Socket.IO sid=ab.cd: 3 lines in, 2 out, client closed") == "client_closed"
    assert termination_of("raw Socket.IO sid=ab.cd: 3 lines in, 2 out, cut off") == "protocol_error"
    assert termination_of("something new") == "other"
