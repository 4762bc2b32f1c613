"""The README documents every metric and every termination reason the code can emit."""

from __future__ import annotations

from monoport.ops.accesslog import FIELDS
import re

from monoport.termination import TERMINATION_REASONS, Termination
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


def test_every_termination_is_a_documented_reason_and_other_is_last():
    assert TERMINATION_REASONS == tuple(reason.value for reason in Termination)
    assert TERMINATION_REASONS[-1] == "other"
    assert len(set(TERMINATION_REASONS)) == len(TERMINATION_REASONS)


def test_connections_end_only_through_conn_end():
    # The reason is typed where it is known: nothing sets a free-form outcome
    # or a termination on a connection from outside it.
    package = ROOT / "monoport"
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "connection.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bconn\.(outcome|detail|termination|ended)\s*=[^=]", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
