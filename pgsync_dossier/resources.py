"""Where the SQL files and the Alembic scripts are, installed or in a checkout.

They live at the top of the repository and are copied into the package by the wheel build,
so look inside the package first and fall back to the checkout (editable installs).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _resource_dir(name: str) -> Path:
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the {name}/ directory is missing from this installation")


def sql_dir() -> Path:
    return _resource_dir("sql")


def alembic_dir() -> Path:
    return _resource_dir("alembic")
