"""subscribers, approve, revoke: the Leader operator's say over each Subscriber."""

from __future__ import annotations

from dataclasses import asdict

import click

from pgsync_dossier import leader_admin
from pgsync_dossier.cli import render
from pgsync_dossier.cli.context import AppContext, pass_app
from pgsync_dossier.cli.options import json_option

_COLUMNS = [
    "node_name",
    "login",
    "state",
    "streams",
    "streaming",
    "requested_at",
    "approved_at",
    "revoked_at",
]


@click.command()
@json_option
@pass_app
def subscribers(app: AppContext, as_json: bool) -> None:
    """The Subscribers that enrolled on this Leader, and their streams."""
    rows = [asdict(row) for row in leader_admin.subscribers(app.config)]
    render.emit(rows, as_json, render.table(rows, _COLUMNS) if rows else "no Subscriber has enrolled yet")


@click.command()
@click.argument("node", metavar="NODE")
@json_option
@pass_app
def approve(app: AppContext, node: str, as_json: bool) -> None:
    """Let Subscriber NODE in: a new one (enrollment: manual), or a revoked one again."""
    result = leader_admin.approve(app.config, node)
    if not result.changed:
        human = f"{result.node_name} is {result.state} already: nothing to do"
    elif result.state == "active":
        human = f"{result.node_name} approved: its next attach, sync or tick streams"
    else:
        human = f"{result.node_name} may enroll again (with a new password): its next sync or tick does"
    render.emit(asdict(result), as_json, human)


@click.command()
@click.argument("node", metavar="NODE")
@click.option(
    "--drop-streams", is_flag=True, help="Also drop its slots and publications (it copies anew if let back)."
)
@json_option
@pass_app
def revoke(app: AppContext, node: str, drop_streams: bool, as_json: bool) -> None:
    """Lock Subscriber NODE out now: its login closed, its streams ended; others go on."""
    result = leader_admin.revoke(app.config, node, drop_streams)
    render.emit(
        asdict(result), as_json, f"{result.node_name} revoked: its login is closed and its streams ended"
    )
    for stream in result.streams_kept:
        render.warn(
            f"slot {stream.name} is kept ({(stream.retained_bytes or 0) / 2**20:.0f} MB of WAL so "
            f"far) and keeps WAL until {result.node_name} is approved again or revoke --drop-streams"
        )
