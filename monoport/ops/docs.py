"""The README's flag table, generated from the Config so that it cannot drift.

``python -m monoport.ops.docs --write README.md`` (``make docs``) replaces the
text between :data:`BEGIN` and :data:`END` with :func:`flags_table`;
``--check`` exits 1 when the README differs (tests/test_docs.py does the
same). Every option's flags, environment names, default and help come from
its ``option(...)`` declaration in :mod:`monoport.config`; nothing here
names an option.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, Sequence

from ..config import env_names, options

BEGIN = "<!-- flags:begin (generated from monoport/config.py by `make docs`; do not edit by hand) -->"
END = "<!-- flags:end -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(f: dataclasses.Field) -> str:
    value: Any = f.default
    if f.metadata["switch"]:
        return "off"
    if f.name == "instance_id" and not value:
        return "random"
    if value is None or value == ():
        return "none"
    if isinstance(value, tuple):
        items = [f"{v[0]}:{v[1]}" if isinstance(v, tuple) else str(v) for v in value]
        return "`" + ", ".join(items) + "`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def _flags(f: dataclasses.Field) -> str:
    meta = f.metadata
    names = ", ".join(f"`{flag}`" for flag in meta["flags"])
    if meta["switch"]:
        arg = ""
    elif meta["choices"]:
        arg = " " + "\\|".join(meta["choices"])
    else:
        arg = " " + _cell(meta["metavar"] or f.name.upper())
    return names + arg + (" (repeatable)" if meta["repeat"] else "")


def flags_table() -> str:
    """The Markdown table of every option, in declaration order."""
    rows = ["| Flag | Environment | Default | What it does |", "|---|---|---|---|"]
    for f in options():
        env = ", ".join(f"`{name}`" for name in env_names(f))
        rows.append(f"| {_flags(f)} | {env} | {_default(f)} | {_cell(f.metadata['help'])} |")
    return "\n".join(rows) + "\n"


def replace_table(text: str, table: str | None = None) -> str:
    """``text`` with the block between the markers replaced by the table.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are missing")
    head = text[: start + len(BEGIN)]
    return head + "\n" + (table if table is not None else flags_table()) + text[end:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monoport.ops.docs", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", metavar="FILE", help="regenerate the table in FILE (README.md)")
    mode.add_argument("--check", metavar="FILE", help="exit 1 if FILE's table is not the generated one")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        sys.stdout.write(flags_table())
        return 0
    path = Path(args.write or args.check)
    text = path.read_text()
    wanted = replace_table(text)
    if args.check:
        if wanted != text:
            print(f"{path}: the flag table is out of date; run `make docs`", file=sys.stderr)
            return 1
        return 0
    if wanted != text:
        path.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
