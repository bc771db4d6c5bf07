"""One registry of advisory-lock kinds (pg.LOCK_KINDS) for Python and SQL: a function in sql/
takes its lock by number, with its kind named beside it, and the number must be the registry's.
A lock taken with another number, or without its kind, would no longer exclude the Python side."""

from __future__ import annotations

import re
from pathlib import Path

from pgsync_dossier import pg
from pgsync_dossier.resources import sql_dir

PACKAGE = Path(pg.__file__).resolve().parent
LOCK_CALL = re.compile(r"pg_(?:try_)?advisory_(?:xact_)?lock(?:_shared)?\s*\(\s*([^,)]+)")


def sql_lock_calls() -> list[tuple[str, str, str]]:
    """(where, first argument, the line) of every advisory lock taken in sql/."""
    found = []
    for path in sorted(sql_dir().glob("*.sql")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for call in LOCK_CALL.finditer(line.split("--", 1)[0]):
                found.append((f"{path.name}:{number}", call.group(1).strip(), line))
    return found


def test_sql_takes_its_locks_by_the_registry_numbers() -> None:
    calls = sql_lock_calls()
    assert calls, "no advisory lock found in sql/: is the pattern still right?"
    wrong = []
    for where, key, line in calls:
        if key.startswith("%("):  # a parameter (pg.sql): pg.lock_key gives it
            continue
        kind = re.search(r"--\s*lock:\s*(\w+)", line)
        if kind is None:
            wrong.append(f"{where}: lock {key} does not name its kind (-- lock: <kind>)")
        elif kind.group(1) not in pg.LOCK_KINDS:
            wrong.append(f"{where}: kind {kind.group(1)} is not in pg.LOCK_KINDS")
        elif key != str(pg.lock_key(kind.group(1), 0)[0]):
            wrong.append(f"{where}: lock {key} is not {kind.group(1)}'s {pg.lock_key(kind.group(1), 0)[0]}")
    assert not wrong, "\n".join(wrong)


def test_python_takes_locks_only_through_pg() -> None:
    """Any other module goes through pg.try_advisory_lock and friends, by kind."""
    offenders = [
        str(path.relative_to(PACKAGE.parent))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "pg.py" and "pg_advisory" in path.read_text(encoding="utf-8")
    ]
    assert not offenders


def test_each_side_has_distinct_keys() -> None:
    leader = [value for kind, value in pg.LOCK_KINDS.items() if kind.startswith("leader_") or kind == "node"]
    subscriber = [value for kind, value in pg.LOCK_KINDS.items() if not kind.startswith("leader_")]
    assert len(set(leader)) == len(leader) and len(set(subscriber)) == len(subscriber)
