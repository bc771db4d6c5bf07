"""init-config and config check."""

from __future__ import annotations

from pathlib import Path

import click

from pgsync_dossier import config as config_module
from pgsync_dossier.cli import render
from pgsync_dossier.cli.context import AppContext, pass_app
from pgsync_dossier.cli.options import ROLE, force_option, json_option
from pgsync_dossier.config_template import write_template


@click.command("init-config")
@click.option("--role", type=ROLE, required=True)
@click.option("--node-name", help="This node's name (default: the host name).")
@click.option("--database-url", help="The dossier database (default: postgresql:///dossiers).")
@click.option("--face-model", help="The face model identifier (identical on every node).")
@click.option(
    "--sync-token-from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Copy the sync token from this node config (Subscribers share the Leader's token).",
)
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@force_option
@pass_app
def init_config(
    app: AppContext,
    role: str,
    node_name: str | None,
    database_url: str | None,
    face_model: str | None,
    sync_token_from: Path | None,
    path: Path | None,
    force: bool,
) -> None:
    """Write a commented config template (with a fresh sync token) to PATH."""
    target = path or config_module.resolve_path(app.config_option)
    token = config_module.load(sync_token_from).sync_token if sync_token_from else None
    write_template(
        target,
        role=role,
        node_name=node_name,
        database_url=database_url,
        face_model=face_model,
        token=token,
        force=force,
    )
    render.message(
        f"wrote {target} (mode 0600); edit it, then run: pgsync-dossier --config {target} config check"
    )


@click.group("config")
def config_group() -> None:
    """Inspect the node configuration."""


@config_group.command("check")
@json_option
@pass_app
def config_check(app: AppContext, as_json: bool) -> None:
    """Validate the config and print the effective settings (the token masked)."""
    effective = app.config.effective()
    render.emit(effective, as_json, render.key_values(effective))
