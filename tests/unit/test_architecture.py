"""The house as docs/architecture.md draws it ("The modules"): the floors, the read-only
modules and the one writer of each pgsync table, read from the document's own tables, so that
the drawing and the code cannot drift apart."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from tests.import_graph import PACKAGE, ROOT, graph, modules

REPOSITORY = ROOT.parent
ARCHITECTURE = REPOSITORY / "docs" / "architecture.md"
SQL = REPOSITORY / "sql"

#: A statement that writes a pgsync table, and the table.
WRITES = re.compile(
    r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?|MERGE\s+INTO)\s+(?:ONLY\s+)?pgsync\.(\w+)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class House:
    floor_of: dict[str, int]  # module (without the package prefix, `cli.*` for a package) -> floor
    readers: frozenset[str]
    writers_of: dict[str, frozenset[str]]  # pgsync table -> the modules that may write it


def _section(text: str) -> str:
    start = text.index("## The modules")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def read_house(text: str) -> House:
    section = _section(text)
    floor_of: dict[str, int] = {}
    writers_of: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            for module in _ticked(cells[2]):
                assert module not in floor_of, f"{module} is on two floors"
                floor_of[module] = int(cells[0])
        elif len(cells) == 3 and cells[0].startswith("`pgsync."):
            owners = {name for name in _ticked(cells[2]) if not name.startswith("pgsync.")}
            for table in _ticked(cells[0]):
                writers_of.setdefault(table.removeprefix("pgsync."), set()).update(owners)
    readers_line = next(line for line in section.splitlines() if line.startswith("Read-only modules"))
    return House(
        floor_of,
        frozenset(_ticked(readers_line)),
        {table: frozenset(owners) for table, owners in writers_of.items()},
    )


HOUSE = read_house(ARCHITECTURE.read_text(encoding="utf-8"))


def _short(module: str) -> str:
    return module.removeprefix(f"{PACKAGE}.") if module != PACKAGE else ""


def floor(module: str) -> int | None:
    """The floor of a module (dotted, without the package), a package's `name.*` covering its
    modules."""
    if module in HOUSE.floor_of:
        return HOUSE.floor_of[module]
    package = module.rpartition(".")[0]
    return HOUSE.floor_of.get(f"{package}.*") if package else None


def _sql_files_loaded(path: Path) -> set[str]:
    """The sql/ files a module loads: every string constant naming one."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"\w+\.sql", node.value)
        and (SQL / node.value).is_file()
    }


def _written(sql_text: str) -> set[str]:
    without_comments = re.sub(r"--[^\n]*", "", sql_text)
    return set(WRITES.findall(without_comments))


def test_the_house_is_read_from_the_document() -> None:
    assert HOUSE.floor_of["pg"] == 1 and HOUSE.floor_of["cli.*"] == 6
    assert "status" in HOUSE.readers
    assert HOUSE.writers_of["link"] == {"catalog"}


def test_every_module_has_a_floor() -> None:
    missing = sorted(_short(m) for m in modules() if m != PACKAGE and floor(_short(m)) is None)
    assert not missing, f"modules missing from docs/architecture.md's floors: {missing}"
    ghosts = sorted(
        name
        for name in HOUSE.floor_of
        if not name.endswith(".*") and f"{PACKAGE}.{name}" not in modules() and name != "__main__"
    )
    assert not ghosts, f"docs/architecture.md names modules that do not exist: {ghosts}"


def test_no_import_climbs_a_floor() -> None:
    climbing = []
    for importer, imported in sorted((a, b) for a, targets in graph().items() for b in targets):
        low, high = floor(_short(importer)), floor(_short(imported))
        if low is not None and high is not None and high > low:
            climbing.append(f"{_short(importer)} (floor {low}) imports {_short(imported)} (floor {high})")
    assert not climbing, "imports that climb a floor:\n  " + "\n  ".join(climbing)


def test_readers_import_no_write_path() -> None:
    wrong = [
        f"{_short(importer)} imports {_short(imported)}"
        for importer, targets in sorted(graph().items())
        if _short(importer) in HOUSE.readers
        for imported in sorted(targets)
        if 3 <= (floor(_short(imported)) or 0) <= 5 and _short(imported) not in HOUSE.readers
    ]
    assert not wrong, "read-only modules that import a write path:\n  " + "\n  ".join(wrong)


def test_each_pgsync_table_is_written_by_its_owner_only() -> None:
    wrong = []
    for module, path in sorted(modules().items()):
        for filename in sorted(_sql_files_loaded(path)):
            for table in sorted(_written((SQL / filename).read_text(encoding="utf-8"))):
                owners = HOUSE.writers_of.get(table)
                if owners is None:
                    wrong.append(f"pgsync.{table} (written by sql/{filename}) has no owner in the document")
                elif _short(module) not in owners:
                    wrong.append(
                        f"{_short(module)} loads sql/{filename}, which writes pgsync.{table} "
                        f"(owned by {', '.join(sorted(owners))})"
                    )
    assert not wrong, "\n  ".join(["writes outside their owner:", *wrong])


def test_no_python_string_writes_a_pgsync_table() -> None:
    found = []
    for module, path in sorted(modules().items()):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _written(node.value):
                found.append(f"{path.relative_to(REPOSITORY)}:{node.lineno} ({_short(module)})")
    assert not found, f"pgsync tables written from Python strings, not from sql/: {found}"


def test_the_writes_are_seen() -> None:
    assert _written("UPDATE pgsync.link SET x = 1; -- DELETE FROM pgsync.node") == {"link"}
    assert _written("INSERT INTO t VALUES (1) ON CONFLICT DO UPDATE SET a = 1") == set()
