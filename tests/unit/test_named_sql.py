"""SQL the pglift way: every statement is a named query in sql/ (pg.query), and a statement
built at run time is a psycopg.sql composition of a named query's text. Read from the source
(ast), without a database."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from pgsync_dossier import pg
from pgsync_dossier.resources import sql_dir

PACKAGE = Path(pg.__file__).resolve().parent
#: Methods that send SQL: a connection's or a cursor's.
SENDS_SQL = {"execute", "executemany", "copy", "stream"}
#: The words a statement starts with; sql.SQL("...") of one of these is inline SQL, while
#: fragments (", ", "{}::integer", ", failover = true") compose named queries.
STATEMENT = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|COPY|SET|RESET|TRUNCATE|ANALYZE|VACUUM|"
    r"GRANT|REVOKE|LOCK|DO|CALL|COMMENT|REFRESH|BEGIN|COMMIT|ROLLBACK|SHOW|EXPLAIN|LISTEN|NOTIFY)\b",
    re.IGNORECASE,
)


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield str(path.relative_to(PACKAGE.parent)), ast.parse(path.read_text(encoding="utf-8"))


def is_text(node: ast.expr) -> bool:
    """A literal string (or bytes), an f-string, or a sum or %-format of them."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str | bytes)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return is_text(node.left) or is_text(node.right)
    return False


def inline_sql() -> list[str]:
    found = []
    for where, tree in modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr in SENDS_SQL and node.args and is_text(node.args[0]):
                found.append(f"{where}:{node.lineno}: {node.func.attr}({ast.unparse(node.args[0])[:60]})")
            elif node.func.attr in ("SQL", "sql") and node.args:
                text = node.args[0]
                if isinstance(text, ast.JoinedStr) or (
                    isinstance(text, ast.Constant)
                    and isinstance(text.value, str)
                    and STATEMENT.match(text.value)
                ):
                    found.append(f"{where}:{node.lineno}: sql.SQL({ast.unparse(text)[:60]})")
    return found


def test_no_statement_is_written_inline() -> None:
    found = inline_sql()
    assert not found, "SQL outside sql/ (make it a named query, pg.query):\n" + "\n".join(found)


def named_queries() -> Iterator[tuple[str, str, str]]:
    """(where, query name, file) of every pg.query call whose name and file are literals or
    module constants, and of every call of a module's wrappers around it: a function or
    method that passes one of its parameters on as the name, with a fixed file, to pg.query
    or to another such wrapper (`_query(name)`, catalog's `_all(conn, cls, name)`,
    `self._call(name, params)`)."""
    for where, tree in modules():
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }
        wrappers = _wrappers(tree, constants)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            if _is_pg_query(node):
                name = _text(node.args[0], constants)
                filename = _text(node.args[1], constants) if len(node.args) > 1 else None
                if name is not None and filename is not None:
                    yield f"{where}:{node.lineno}", name, filename
            elif (wrapper := wrappers.get(_called(node))) is not None:
                position, filename = wrapper
                if position < len(node.args) and (name := _text(node.args[position], constants)):
                    yield f"{where}:{node.lineno}", name, filename


def _called(node: ast.Call) -> str | None:
    """The name a call calls: `f(...)` or `self.f(...)`."""
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
        return node.func.attr if node.func.value.id == "self" else None
    return None


def _wrappers(tree: ast.Module, constants: dict[str, str]) -> dict[str | None, tuple[int, str]]:
    """Each wrapper's name -> (the position of its name argument at a call, its file); found
    again until none is new, so that a wrapper of a wrapper counts."""
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)]
    found: dict[str | None, tuple[int, str]] = {}
    while True:
        before = len(found)
        for function in functions:
            parameters = [argument.arg for argument in function.args.args]
            is_method = bool(parameters) and parameters[0] == "self"
            for call in ast.walk(function):
                if not isinstance(call, ast.Call) or not call.args:
                    continue
                if _is_pg_query(call):
                    position, filename = 0, _text(call.args[1], constants) if len(call.args) > 1 else None
                elif (inner := found.get(_called(call))) is not None:
                    position, filename = inner
                else:
                    continue
                passed = call.args[position] if position < len(call.args) else None
                if filename and isinstance(passed, ast.Name) and passed.id in parameters:
                    found[function.name] = (parameters.index(passed.id) - is_method, filename)
        if len(found) == before:
            return found


def _text(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _is_pg_query(node: ast.Call) -> bool:
    if isinstance(node.func, ast.Name):  # inside pg.py
        return node.func.id == "query"
    return (
        isinstance(node.func, ast.Attribute)
        and node.func.attr == "query"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "pg"
    )


def test_every_named_query_exists_in_the_file_named() -> None:
    calls = list(named_queries())
    assert len(calls) > 50, "the calls were not found: is the pattern still right?"
    missing = [
        f"{where}: {name} is not in sql/{filename}"
        for where, name, filename in calls
        if not (sql_dir() / filename).is_file() or name not in pg._queries(filename)
    ]
    assert not missing, "\n".join(missing)


def test_every_named_query_file_parses() -> None:
    """Each file of named queries has unique names, and no query is empty."""
    for path in sorted(sql_dir().glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        names = re.findall(r"^--\s*name:\s*(\S+)\s*$", text, re.MULTILINE)
        if not names:
            continue  # a script (leader_api.sql), run whole
        assert len(names) == len(set(names)), f"{path.name}: a name is used twice"
        assert all(pg._queries(path.name)[name].strip() for name in names), path.name
