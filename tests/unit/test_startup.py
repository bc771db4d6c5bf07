"""Every command pays for what it imports: the CLI must not pull in what only one command uses.

Checked in a fresh interpreter, because this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("alembic", "sqlalchemy", "fastapi", "uvicorn", "starlette", "pydantic", "pgsync_dossier.demo")


def _imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_importing_the_cli_loads_no_command() -> None:
    modules = _imported_after("import pgsync_dossier.cli")
    assert _heavy(modules) == []
    assert "psycopg" not in modules  # config check and init-config never connect
    assert not [m for m in modules if m.startswith("pgsync_dossier.cli.") and m.endswith("_cmds")]


@pytest.mark.parametrize("command", ["status", "tick", "sync", "attach", "detach", "verify", "config"])
def test_a_command_loads_only_what_it_uses(command: str) -> None:
    code = (
        f"from pgsync_dossier.cli import cli\nimport click\ncli.get_command(click.Context(cli), {command!r})"
    )
    assert _heavy(_imported_after(code)) == []


def test_the_collector_is_on_again_once_the_command_is_loaded() -> None:
    """main() keeps the collector off while modules load; a command (a daemon among them)
    must never run without it."""
    code = (
        "import gc, click\nfrom pgsync_dossier.cli import cli\ngc.disable()\n"
        "cli.get_command(click.Context(cli), 'run')\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]
