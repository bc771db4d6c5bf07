"""Options shared by several commands, and the types of their values: declared once, reused.

A value that does not fit is refused in the command's words, naming the parameter as the usage
line shows it and what it expects: `T must be a list id, a whole number from 1 to 2147483647,
not 'abc'`, where click would say "'abc' is not a valid integer range".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON (documented in docs/cli.md)."
)
force_option = click.option("--force", is_flag=True, help="Overwrite or proceed where it would refuse.")


if TYPE_CHECKING:
    _FloatParam = click.ParamType[float, Any]
    _IntParam = click.ParamType[int, Any]
    _StrChoice = click.Choice[str]
else:  # click < 8.2 has no type parameters at run time
    _FloatParam = _IntParam = click.ParamType
    _StrChoice = click.Choice


class Expected(click.BadParameter):
    """A value refused with what the parameter expects, e.g. `--timeout must be a number of
    seconds, positive and finite, not 'soon'` (click's form is "Invalid value for ...")."""

    def __init__(
        self, expected: str, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> None:
        super().__init__(f"must be {expected}, not {str(value)!r}", ctx=ctx, param=param)

    def format_message(self) -> str:
        return f"{parameter_name(self.param)} {self.message}"


def parameter_name(param: click.Parameter | None) -> str:
    """A parameter as the usage line and --help show it: `--timeout`, or an argument's
    metavar without its brackets (`T` for `[T]...`)."""
    if param is None:
        return "the value"
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return (param.metavar or (param.name or "value").upper()).strip("[].") or "value"


class Integer(_IntParam):
    """A whole number within bounds, such as a list id the schema can store (refused before
    any SQL when out of range)."""

    name = "integer"

    def __init__(self, what: str, low: int, high: int) -> None:
        self.expected = f"{what}, a whole number from {low} to {high}"
        self.low, self.high = low, high

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                raise Expected(self.expected, value, param, ctx) from None
        if not self.low <= number <= self.high:
            raise Expected(self.expected, value, param, ctx)
        return number


class Seconds(_FloatParam):
    """A positive, finite number of seconds: `nan` would never expire and `inf` never end."""

    name = "seconds"
    expected = "a number of seconds, positive and finite"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            seconds = value
        else:
            try:
                seconds = float(str(value))
            except ValueError:
                raise Expected(self.expected, value, param, ctx) from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise Expected(self.expected, value, param, ctx)
        return seconds


class OneOf(_StrChoice):
    """One of a few words (--help shows them as click does): `--role must be leader or
    subscriber, not 'boss'`."""

    def __init__(self, *words: str) -> None:
        super().__init__(words)
        self.expected = " or ".join(filter(None, [", ".join(words[:-1]), words[-1]]))

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return str(super().convert(value, param, ctx))
        except click.BadParameter:
            raise Expected(self.expected, value, param, ctx) from None


#: A list id as the schema stores it (integer): refused before any SQL when out of range.
LIST_ID = Integer("a list id", 1, 2**31 - 1)
SECONDS = Seconds()
PORT = Integer("a TCP port", 1, 65535)
ROLE = OneOf("leader", "subscriber", "relay")
