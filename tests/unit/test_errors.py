"""Every error code the product emits has one class (so one exit code) and one HTTP status,
decided in errors.py: a new code without a mapping, or a raise site whose class says another
exit code than its code's, fails here."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

import pgsync_dossier
from pgsync_dossier import errors, leader_client, pg
from pgsync_dossier.errors import (
    ConfigError,
    DeadlineExceeded,
    OperationFailed,
    PgsyncError,
    PreconditionFailed,
    ServerUnreachable,
    UsageError,
    error_for,
    error_for_all,
    http_status,
)
from pgsync_dossier.sync import Status

PACKAGE = Path(pgsync_dossier.__file__).parent


def _error_classes() -> dict[str, type[PgsyncError]]:
    """Every PgsyncError subclass by name (pg.py and leader_client.py add their own)."""
    found: dict[str, type[PgsyncError]] = {}
    pending: list[type[PgsyncError]] = [PgsyncError, leader_client.LoginRefused, pg.AuthenticationFailed]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def _emitted() -> list[tuple[str, str | None, str]]:
    """(code, the class named where it is emitted or None, where) for every literal code in the
    package: `code="..."` arguments, `default_code = "..."` and `"code": "..."` in dicts."""
    found: list[tuple[str, str | None, str]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = str(path.relative_to(PACKAGE))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                for keyword in node.keywords:
                    if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
                        found.append((str(keyword.value.value), name, f"{where}:{node.lineno}"))
            elif isinstance(node, ast.ClassDef):
                for statement in node.body:
                    target = statement.targets[0] if isinstance(statement, ast.Assign) else None
                    if isinstance(statement, ast.AnnAssign):
                        target = statement.target
                    value = getattr(statement, "value", None)
                    if isinstance(target, ast.Name) and target.id == "default_code":
                        assert isinstance(value, ast.Constant)
                        found.append((str(value.value), node.name, f"{where}:{statement.lineno}"))
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "code"
                        and isinstance(value, ast.Constant)
                    ):
                        found.append((str(value.value), None, f"{where}:{node.lineno}"))
    return found


def test_the_scan_finds_the_codes() -> None:
    codes = {code for code, _cls, _where in _emitted()}
    assert {"list_not_empty", "busy", "timeout", "authentication_failed", "internal"} <= codes


def test_every_emitted_code_has_a_class() -> None:
    unmapped = sorted(
        {f"{code} ({where})" for code, _cls, where in _emitted() if code not in errors.CLASS_BY_CODE}
    )
    assert not unmapped, f"add these codes to errors.CLASS_BY_CODE: {unmapped}"


def test_every_sync_status_that_is_not_synced_has_a_class() -> None:
    """A sync outcome without a code of its own carries its status as its code (sync.finish)."""
    assert {status for status in get_args(Status) if status != "synced"} <= errors.CLASS_BY_CODE.keys()


def test_a_raise_site_agrees_with_its_code() -> None:
    """`SomeError(..., code="x")` exits and answers HTTP as error_for("x") says."""
    classes = _error_classes()
    disagreeing = []
    for code, name, where in _emitted():
        raised = classes.get(name or "")
        if raised is None or (raised is PgsyncError and code == PgsyncError.default_code):
            continue  # an outcome or an error body (only the code travels); the base's default
        mapped = error_for(code)
        if raised.exit_code != mapped.exit_code or http_status(raised("m", code)) != http_status(
            mapped("m", code)
        ):
            disagreeing.append(f"{where}: {name}(code={code!r}) but error_for says {mapped.__name__}")
    assert not disagreeing, disagreeing


def test_every_mapped_code_is_emitted() -> None:
    """No dead entries: a code that nothing emits any more leaves the table (and the docs)."""
    emitted = {code for code, _cls, _where in _emitted()} | set(get_args(Status))
    assert set(errors.CLASS_BY_CODE) - emitted == set()
    assert set(errors.HTTP_STATUS_BY_CODE) <= set(errors.CLASS_BY_CODE)


@pytest.mark.parametrize(
    ("code", "exit_code", "status"),
    [
        ("unreachable", 4, 503),
        ("authentication_failed", 4, 503),
        ("timeout", 1, 504),
        ("busy", 3, 409),
        ("paused", 3, 409),
        ("schema_mismatch", 3, 409),
        ("token_mismatch", 3, 409),
        ("local_list_not_found", 3, 422),
        ("not_a_replica", 3, 404),
        ("unauthorized", 3, 401),
        ("read_only_token", 3, 403),
        ("node_not_set_up", 3, 503),
        ("invalid_url", 2, 422),
        ("config", 2, 422),
        ("subscription_failed", 1, 502),
        ("not_published", 1, 502),
        ("failed", 1, 502),
        ("internal", 1, 500),
        (None, 1, 502),
        ("a_code_nobody_knows", 1, 502),
    ],
)
def test_documented_exit_codes_and_http_statuses(code: str | None, exit_code: int, status: int) -> None:
    """The figures of docs/troubleshooting.md#error-codes and docs/http-api.md."""
    error = error_for(code)("message", code)
    assert (error.exit_code, http_status(error)) == (exit_code, status)


def test_classes_keep_their_exit_codes() -> None:
    assert [c.exit_code for c in (OperationFailed, UsageError, ConfigError, PreconditionFailed)] == [
        1,
        2,
        2,
        3,
    ]
    assert (ServerUnreachable.exit_code, DeadlineExceeded.exit_code) == (4, 1)


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        (["unreachable", "unreachable"], ServerUnreachable),
        (["unreachable", "authentication_failed"], ServerUnreachable),
        (["schema_mismatch"], PreconditionFailed),
        (["busy"], OperationFailed),
        (["paused", "paused"], OperationFailed),
        (["unreachable", "schema_mismatch"], OperationFailed),
        (["unreachable", "busy"], OperationFailed),
        (["failed"], OperationFailed),
    ],
)
def test_a_sync_of_several_lists_exits_as_all_its_failures_agree(
    codes: list[str], expected: type[PgsyncError]
) -> None:
    assert error_for_all(codes) is expected
