"""Rendering: data to stdout (a table for people, JSON for scripts), messages to stderr."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import click


def printable(text: str, *, keep_newlines: bool = True) -> str:
    """Control characters escaped (\\x1b, \\n): a name from another node (or a hostile
    one) must not move the cursor, recolour the terminal or fake a line of output."""
    return "".join(
        f"\\x{ord(ch):02x}" if unicodedata.category(ch) == "Cc" and not (keep_newlines and ch == "\n") else ch
        for ch in text
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return printable(str(value), keep_newlines=False)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "(none)"
    columns = list(columns or rows[0].keys())
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(line[i]) for line in cells)) for i, col in enumerate(columns)]
    header = "  ".join(col.upper().ljust(width) for col, width in zip(columns, widths, strict=True))
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    return "\n".join([header.rstrip(), *lines])


def key_values(data: Mapping[str, Any]) -> str:
    width = max(len(key) for key in data)
    return "\n".join(f"{key.ljust(width)}  {_cell(value)}" for key, value in data.items())


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


#: Whether the command printed its result on stdout: a failure that follows (a sync whose rows
#: say which lists failed) is not printed there too, so stdout stays one JSON document.
_result_printed = False


def emit(data: Any, as_json: bool, human: str) -> None:
    """Write the result to stdout, in JSON when asked."""
    global _result_printed
    click.echo(to_json(data) if as_json else printable(human))
    _result_printed = True


def forget_result() -> None:
    """A new command starts (several run in one process under tests): nothing printed yet."""
    global _result_printed
    _result_printed = False


def error(code: str, text: str, as_json: bool, hint: str = "") -> None:
    """A command's failure: one red `error:` line on stderr (then the hint, e.g. click's usage
    lines) and, with --json, `{"code", "message"}` on stdout unless the result is there already."""
    line = printable(text, keep_newlines=False)
    click.secho(f"error: {line}", err=True, fg="red")
    if hint:
        click.echo(hint, err=True)
    if as_json and not _result_printed:
        click.echo(to_json({"code": code, "message": line}))


def warn(text: str) -> None:
    """A warning for people, one line on stderr: stdout stays data (JSON included)."""
    click.echo(f"warning: {printable(text)}", err=True)


def message(text: str) -> None:
    """A progress or informational line for people: stderr, so stdout stays data."""
    click.echo(printable(text), err=True)
