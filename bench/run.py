"""The benchmark harness: `./run bench [NAME...]`.

Starts its own Leader and Subscriber clusters (fsync on) for each PostgreSQL version found,
runs each case with its methods in rotated order, a CHECKPOINT before each run and 3
repetitions or more, checks every copy, prints medians (min-max) and ratios against the
baseline measured in the same run, and writes the same as JSON under bench/results/.
pgsync-dossier's own modules are compiled to bytecode first, as an installed package's are
(pip compiles them; a checkout run with PYTHONDONTWRITEBYTECODE would compile them again in
every command, ~40 ms each).

    ./run bench                       every case, every PostgreSQL found (15 and 18 here)
    ./run bench attach --reps 5       one case
    ./run bench verify --dossiers 300000   the verify case on a larger list
    ./run bench catchup-repeat --reps 20   one 50% catch-up of 100,000, 20 times in a row
    ./run bench --smoke               tiny sizes, one repetition: the harness works (CI)
    ./run bench --size 1m             attach, repair, verify and catch-up at 1,000,000 dossiers
                                      with 2 faces each (and at 100,000, the memory reference),
                                      peak RSS and the group's pause; the goals, met or not
    ./run bench catchup --size 1m --shares 10,50   the catch-up alone, of these shares changed
    ./run bench fleet --sites 32      32 sites on one Leader, directly and through 1 and 2 relays:
                                      the Leader's decode CPU and the last hop's freshness
"""

from __future__ import annotations

import argparse
import compileall
import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    case_attach,
    case_catchup,
    case_fleet,
    case_freshness,
    case_leader,
    case_memory,
    case_overhead,
    case_repair,
    case_verify,
    goals,
)
from bench.sites import Sites, started
from pgsync_dossier import __file__ as package_init
from pgsync_dossier.clusters import find_bindir, server_version

RESULTS = Path(__file__).parent / "results"
SYSTEM_BINDIRS = (Path("/usr/lib/postgresql/15/bin"),)


#: The cases a `--size` run has by default, in this order (catch-up changes the shared list).
AT_SCALE = ("attach", "repair", "verify", "catchup", "memory")
#: Faces per dossier in a `--size` run: large sites enrol several per person.
FACES_AT_SCALE = 2
#: The size a `--size` run measures too, as the memory reference (the goal: peak RSS at the
#: large size within 50 MB of this one's).
REFERENCE_SIZE = 100_000


def _size(value: str) -> int:
    """`1m`, `300k` or `250000`."""
    text = value.strip().lower().replace("_", "").replace(",", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    try:
        size = int(float(text.rstrip("km")) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a size: give e.g. 1m, 300k or 250000") from None
    if size < 1000:
        raise argparse.ArgumentTypeError("a --size of at least 1000 dossiers, e.g. 1m")
    return size


def _shares(value: str) -> list[float]:
    """`10,50`: percentages of a list changed before a catch-up."""
    try:
        shares = [float(part) / 100 for part in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a list of percentages: give e.g. 10,50") from None
    if not shares or any(not 0 < share <= 1 for share in shares):
        raise argparse.ArgumentTypeError("each share is a percentage above 0 and at most 100, e.g. 10,50")
    return shares


def _at_scale(args: argparse.Namespace) -> dict[str, Callable[[Sites], dict[str, Any]]]:
    sizes = sorted({REFERENCE_SIZE, args.size}) if args.size > REFERENCE_SIZE else [args.size]
    reps = args.reps
    return {
        "attach": lambda s: case_attach.run(s, sizes, reps, at_scale=True),
        "repair": lambda s: case_repair.run(s, sizes, reps, at_scale=True),
        "verify": lambda s: {str(n): case_verify.run(s, n, reps, at_scale=True) for n in sizes},
        "catchup": lambda s: {
            str(n): case_catchup.run(s, n, args.shares, reps, forced=not args.without_forced) for n in sizes
        },
        "memory": lambda s: case_memory.run(s, sizes),
    }


def _cases(args: argparse.Namespace) -> dict[str, Callable[[Sites], dict[str, Any]]]:
    if args.size:
        return _at_scale(args)
    smoke = args.smoke
    reps = 1 if smoke else args.reps
    return {
        "attach": lambda s: case_attach.run(s, [2000] if smoke else args.sizes, reps),
        "catchup": lambda s: case_catchup.run(
            s, 2000 if smoke else 100_000, [0.01] if smoke else args.shares, reps
        ),
        "catchup-repeat": lambda s: case_catchup.repeated(s, 2000 if smoke else 100_000, 0.50, reps),
        "freshness": lambda s: case_freshness.run(s, 1000, 2.0 if smoke else 60.0, reps),
        "overhead": lambda s: case_overhead.run(
            s, [1, 3] if smoke else [1, 20, 100], 1 if smoke else 5, 2000 if smoke else 100_000
        ),
        "repair": lambda s: case_repair.run(s, [5000] if smoke else args.sizes, reps),
        "leader": lambda s: case_leader.run(
            s, [1, 2] if smoke else [1, 8, 32], reps, 2.0 if smoke else 15.0, 100 if smoke else 500
        ),
        "verify": lambda s: case_verify.run(s, 2000 if smoke else args.dossiers, reps),
        "fleet": lambda s: case_fleet.run(
            s, [2] if smoke else args.sites, reps, 2.0 if smoke else 20.0, 200 if smoke else 2000
        ),
    }


def _bindirs(chosen: list[str]) -> list[Path]:
    if chosen:
        return [Path(b) for b in chosen]
    found = [find_bindir()]
    found += [b for b in SYSTEM_BINDIRS if (b / "postgres").is_file() and b.resolve() != found[0].resolve()]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./run bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="cases to run (default: all)")
    parser.add_argument("--pg-bin", action="append", default=[], help="server bin/ directory (repeatable)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each method (at least 3)")
    parser.add_argument(
        "--sizes",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[100_000, 300_000],
        help="attach and repair sizes",
    )
    parser.add_argument(
        "--dossiers", type=int, default=100_000, help="the verify case's list size (--smoke: 2000)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one repetition (checks the harness)"
    )
    parser.add_argument(
        "--size",
        type=_size,
        help="attach, repair, verify and catch-up at this many dossiers, 2 faces each (e.g. 1m)",
    )
    parser.add_argument(
        "--sites",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 4, 16, 32],
        help="fleet: the numbers of sites (default 1,4,16,32)",
    )
    parser.add_argument(
        "--shares",
        type=_shares,
        default=[0.01, 0.10, 0.50],
        help="catch-up: the shares of the list changed, in percent (default 1,10,50)",
    )
    parser.add_argument(
        "--without-forced",
        action="store_true",
        help="catch-up at --size: only the sync's own choice, not also always replayed and always "
        "repaired (those place the bound between them; they take half a million-row run's time)",
    )
    args = parser.parse_args(argv)
    cases = _cases(args)
    names = args.names or list(cases)
    if args.size and args.smoke:
        parser.error("--size and --smoke do not go together: --smoke is tiny sizes")
    unknown = [n for n in names if n not in cases]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; choose from {', '.join(cases)}")
    if args.without_forced and not args.size:
        parser.error("--without-forced goes with --size: the forced catch-ups are measured only there")
    if args.reps < 3 and not args.smoke:
        parser.error("--reps must be at least 3 (medians of fewer runs say little)")
    RESULTS.mkdir(exist_ok=True)
    compileall.compile_dir(Path(package_init).parent, quiet=1)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for bindir in _bindirs(args.pg_bin):
        version = server_version(bindir)
        print(
            f"\n## PostgreSQL {version} ({bindir}), {platform.node()}, {datetime.now(UTC):%Y-%m-%d}",
            flush=True,
        )
        report: dict[str, Any] = {
            "postgresql": version,
            "machine": {
                "cpus": len(__import__("os").sched_getaffinity(0)),
                "python": platform.python_version(),
            },
            "started": stamp,
            "smoke": args.smoke,
            "cases": {},
        }
        with started(bindir) as sites:
            if args.size:
                sites.faces_per_dossier = FACES_AT_SCALE
                report["size"], report["faces_per_dossier"] = args.size, FACES_AT_SCALE
            for name in names:
                print(f"\n### {name}", flush=True)
                t0 = time.perf_counter()
                report["cases"][name] = cases[name](sites)
                print(f"({name}: {time.perf_counter() - t0:.0f}s)", flush=True)
        if args.size:
            report["goals"] = goals.judge(report, args.size, REFERENCE_SIZE)
            print(goals.render(report["goals"]))
        kind = "smoke" if args.smoke else (f"size{args.size}" if args.size else "run")
        out = RESULTS / f"{stamp}-{kind}-pg{version.split('.')[0]}.json"
        out.write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
