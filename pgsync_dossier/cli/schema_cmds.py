"""migrate: bring the dossier database schema to a revision."""

from __future__ import annotations

import click

from pgsync_dossier import migrations
from pgsync_dossier.cli import render
from pgsync_dossier.cli.context import AppContext, pass_app
from pgsync_dossier.cli.options import json_option


@click.command()
@click.option(
    "--to",
    "target",
    default="head",
    show_default=True,
    metavar="REV",
    help="Target revision: head, base (removes everything) or a revision id.",
)
@json_option
@pass_app
def migrate(app: AppContext, target: str, as_json: bool) -> None:
    """Upgrade (or downgrade) the dossier database schema."""
    before, after = migrations.migrate(app.config.database_url, target)
    result = {"from": before, "to": after, "changed": before != after}
    human = (
        f"schema at {after or 'base'} (was {before or 'base'})"
        if before != after
        else f"schema already at {after or 'base'}"
    )
    render.emit(result, as_json, human)


@click.command("prepare-upgrade")
@json_option
@pass_app
def prepare_upgrade(app: AppContext, as_json: bool) -> None:
    """Ready this node for pg_upgrade of its server; run setup on the new one."""
    from pgsync_dossier import server_upgrade

    result = server_upgrade.prepare(app.config)
    result["next"] = server_upgrade.advice(result)
    render.emit(result, as_json, f"{result['role']} ready for pg_upgrade")
    if not as_json:
        for line in result["next"]:
            render.message(line)
