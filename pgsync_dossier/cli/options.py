"""Options shared by several commands: declared once, reused."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON (documented in docs/cli.md)."
)
force_option = click.option("--force", is_flag=True, help="Overwrite or proceed where it would refuse.")

#: A list id as the schema stores it (integer): refused before any SQL when out of range.
LIST_ID = click.IntRange(1, 2**31 - 1)


if TYPE_CHECKING:
    _FloatParam = click.ParamType[float, Any]
else:  # click < 8.2 has no type parameters at run time
    _FloatParam = click.ParamType


class Seconds(_FloatParam):
    """A positive, finite number of seconds: `nan` would never expire and `inf` never end."""

    name = "seconds"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            seconds = value
        else:
            try:
                seconds = float(str(value))
            except ValueError:
                self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or seconds <= 0:
            self.fail(f"{value!r} is not a positive, finite number of seconds", param, ctx)
        return seconds


SECONDS = Seconds()
