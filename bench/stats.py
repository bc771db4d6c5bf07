"""Medians, spreads, ratios and the printed table. Pure."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Series:
    """Repeated measurements of one thing, in one unit."""

    name: str
    unit: str = "s"
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def cell(self) -> str:
        if not self.values:
            return "-"
        if len(self.values) == 1:
            return f"{_fmt(self.values[0])} {self.unit}"
        return f"{_fmt(self.median)} {self.unit} ({_fmt(min(self.values))}-{_fmt(max(self.values))})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "values": self.values,
            "median": self.median if self.values else None,
            "min": min(self.values) if self.values else None,
            "max": max(self.values) if self.values else None,
        }


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def ratio(numerator: Series, denominator: Series) -> float | None:
    if not numerator.values or not denominator.values or denominator.median == 0:
        return None
    return numerator.median / denominator.median


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines.extend(
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows
    )
    return "\n".join(lines)


def rotations(names: Sequence[str], reps: int) -> list[list[str]]:
    """The order of each repetition: every method takes every position in turn, so no method
    always runs first (cold caches) or last (a fuller WAL)."""
    return [list(names[rep % len(names) :]) + list(names[: rep % len(names)]) for rep in range(reps)]
