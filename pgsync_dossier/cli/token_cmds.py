"""api-token create, revoke, list: the credentials of the HTTP API and the web page."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from pgsync_dossier import api_tokens
from pgsync_dossier.cli import render
from pgsync_dossier.cli.context import AppContext, pass_app
from pgsync_dossier.cli.options import json_option


@click.group("api-token")
def api_token() -> None:
    """Named tokens for the HTTP API and the web page (which refuse the sync token)."""


@api_token.command()
@click.argument("name")
@click.option("--read-only", is_flag=True, help="The token may only read (GET), never change anything.")
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Take the token from this file (made by create on another node) instead of drawing one: "
    "one token for a scraper of every node.",
)
@json_option
@pass_app
def create(app: AppContext, name: str, read_only: bool, from_file: Path | None, as_json: bool) -> None:
    """Make an API token called NAME and print it, once: only its hash is kept."""
    given = api_tokens.read_token_file(from_file) if from_file is not None else None
    made = api_tokens.create(app.config, name, read_only, token=given)
    if given is not None:
        render.emit({**asdict(made), "token": None}, as_json, f"API token {name} installed from {from_file}")
        return
    render.emit(asdict(made), as_json, made.token)
    if not as_json:
        render.message("store it now: it cannot be shown again")


@api_token.command()
@click.argument("name")
@pass_app
def revoke(app: AppContext, name: str) -> None:
    """Revoke the API token called NAME: the API refuses it from the next request on."""
    api_tokens.revoke(app.config, name)
    render.message(f"API token {name} revoked")


@api_token.command("list")
@json_option
@pass_app
def list_command(app: AppContext, as_json: bool) -> None:
    """The API tokens: names, rights and last use (never a token or its hash)."""
    rows = [asdict(token) for token in api_tokens.list_tokens(app.config)]
    render.emit(rows, as_json, render.table(rows))
