"""Options shared by several commands: declared once, reused."""

from __future__ import annotations

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON (documented in the README)."
)
force_option = click.option("--force", is_flag=True, help="Overwrite or proceed where it would refuse.")
