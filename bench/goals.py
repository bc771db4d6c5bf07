"""The goals of a `--size` run (issue 27), judged from the figures the cases returned. Pure.

Each goal names its figure, its bound and whether this run met it: a figure that misses is
printed as such, never left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bench.stats import table

#: A pause of the group's other lists longer than this is a goal missed.
PAUSE_GOAL_S = 10.0
RSS_GROWTH_GOAL_MB = 50.0


@dataclass(frozen=True)
class Goal:
    what: str
    figure: float | None
    bound: str
    met: bool | None  # None: not measured in this run

    def row(self) -> list[str]:
        shown = "-" if self.figure is None else f"{self.figure:.2f}"
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[self.met]
        return [self.what, shown, self.bound, verdict]


def _median(series: dict[str, Any] | None) -> float | None:
    return None if not series else series.get("median")


def _at_most(what: str, figure: float | None, bound: float, unit: str = "x") -> Goal:
    return Goal(what, figure, f"<= {bound:g}{unit}", None if figure is None else figure <= bound)


def judge(report: dict[str, Any], size: int, reference: int) -> list[dict[str, Any]]:
    cases = report["cases"]
    goals: list[Goal] = []
    attach = cases.get("attach", {}).get("sizes", {}).get(size)
    if attach is not None:
        peer = attach["fastest_peer"]
        goals.append(
            _at_most(
                f"attach / the faster of the fair floor and native ({peer})",
                attach["ratios_to_fastest_peer"]["pgsync attach (CLI)"],
                1.10,
            )
        )
        goals.append(
            _at_most(
                "the group's other lists' wait during an attach (s)",
                _median(attach.get("other_lists_wait_s")),
                PAUSE_GOAL_S,
                " s",
            )
        )
    repair = cases.get("repair", {}).get("sizes", {}).get(size)
    if repair is not None:
        speedup = repair["fresh_attach_over_repair"]
        goals.append(_at_most("repair of 1% / a fresh attach", 1 / speedup if speedup else None, 0.1))
        goals.append(
            _at_most(
                "the group's other lists' wait during a repair (s)",
                _median(repair.get("other_lists_wait_s")),
                PAUSE_GOAL_S,
                " s",
            )
        )
    verify = cases.get("verify", {}).get(str(size))
    if verify is not None:
        goals.append(
            _at_most("verify of an equal list / a fresh attach", verify["verify_over_fresh_attach"], 0.3)
        )
    catchup = cases.get("catchup", {}).get(str(size))
    if catchup is not None:
        half = catchup["shares"].get("50%")
        goals.append(
            _at_most(
                "catch-up of 50% changed / a fresh attach",
                half["catchup_over_fresh_attach"] if half else None,
                1.0,
            )
        )
    for what, large, small in _peaks(cases, size, reference):
        growth = None if large is None or small is None else large - small
        goals.append(
            _at_most(
                f"peak RSS of {what}: {size:,} minus {reference:,} (MB)",
                growth,
                RSS_GROWTH_GOAL_MB,
                " MB",
            )
        )
    return [asdict(goal) for goal in goals]


def _peaks(cases: dict[str, Any], size: int, reference: int) -> list[tuple[str, float | None, float | None]]:
    """(command, median peak RSS at `size`, at `reference`) for each command timed at both:
    the memory case's when it ran, else the timed cases'."""
    found: list[tuple[str, float | None, float | None]] = []
    memory = cases.get("memory", {}).get("sizes", {})
    if str(size) in memory and str(reference) in memory:
        large, small = memory[str(size)], memory[str(reference)]
        return [(c, large[c]["peak_rss_mb"], small[c]["peak_rss_mb"]) for c in large if c in small]
    attach = cases.get("attach", {}).get("sizes", {})
    if size in attach and reference in attach:
        found.append(
            (
                "attach",
                _median(attach[size].get("peak_rss_mb")),
                _median(attach[reference].get("peak_rss_mb")),
            )
        )
    repair = cases.get("repair", {}).get("sizes", {})
    if size in repair and reference in repair:
        name = "repair in place (CLI)"
        found.append(
            (
                "repair",
                _median(repair[size]["peak_rss_mb"][name]),
                _median(repair[reference]["peak_rss_mb"][name]),
            )
        )
    verify = cases.get("verify", {})
    if str(size) in verify and str(reference) in verify:
        name = "verify (CLI)"
        found.append(
            (
                "verify",
                _median(verify[str(size)]["peak_rss_mb"][name]),
                _median(verify[str(reference)]["peak_rss_mb"][name]),
            )
        )
    catchup = cases.get("catchup", {})
    if str(size) in catchup and str(reference) in catchup:
        for share in catchup[str(size)]["shares"]:
            found.append(
                (
                    f"a catch-up of {share}",
                    _median(catchup[str(size)]["shares"][share]["peak_rss_mb"]["catch-up sync"]),
                    _median(catchup[str(reference)]["shares"][share]["peak_rss_mb"]["catch-up sync"]),
                )
            )
    return found


def render(goals: list[dict[str, Any]]) -> str:
    rows = [Goal(**goal).row() for goal in goals]
    return "\n### goals\n" + table(["goal", "figure", "bound", "this run"], rows)
