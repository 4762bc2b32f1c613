"""The README's flag table is the one generated from the Config (make docs)."""

from __future__ import annotations

import pytest

from monoport.ops import docs
from monoport.config import options
from tests.conftest import ROOT


def test_readme_flag_table_matches_the_config():
    readme = (ROOT / "README.md").read_text()
    assert docs.replace_table(readme) == readme, "README.md's flag table is out of date: run `make docs`"


def test_every_option_has_a_row_with_its_flags_and_environment_name():
    table = docs.flags_table()
    rows = table.splitlines()[2:]
    assert len(rows) == len(options())
    for f, row in zip(options(), rows):
        assert f"`{f.metadata['flags'][0]}`" in row and f"`MONOPORT_{f.name.upper()}`" in row


def test_pipes_in_choices_and_help_do_not_break_the_table():
    for row in docs.flags_table().splitlines():
        assert row.replace("\\|", "").count("|") == 5, row


def test_missing_markers_are_an_error():
    with pytest.raises(ValueError):
        docs.replace_table("# no markers here\n")
