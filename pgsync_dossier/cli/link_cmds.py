"""setup, attach, detach, status, leader-unavailable."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

import click

from pgsync_dossier import copier, links, node, status
from pgsync_dossier.cli import render
from pgsync_dossier.cli.context import AppContext, pass_app
from pgsync_dossier.cli.options import LIST_ID, SECONDS, json_option
from pgsync_dossier.copier import Progress
from pgsync_dossier.results import LinkResult

R = TypeVar("R", bound=LinkResult)


@click.command()
@click.option(
    "--failover",
    is_flag=True,
    help="Confirm that this database, a standby promoted in another data directory, replaces this "
    "Subscriber (not a copy of it): it keeps its streams and repairs its replicas in place.",
)
@json_option
@pass_app
def setup(app: AppContext, failover: bool, as_json: bool) -> None:
    """Check this node's server, then record the node and install its role's SQL."""
    result = node.setup(app.config, failover=failover)
    verb = "set up" if result.created else "updated"
    notes = [
        "sync token rotated" if result.token_rotated else "",
        "face model changed: Subscribers with the old model will pause" if result.face_model_changed else "",
    ]
    if result.upgraded_lists:
        notes.append("version-1 links upgraded in place: list " + ", ".join(map(str, result.upgraded_lists)))
    if result.upgrade_pending:
        notes.append(
            "upgrade of list "
            + ", ".join(str(p.local_list) for p in result.upgrade_pending)
            + f" pending ({result.upgrade_pending[0].error}); the next sync or tick finishes it"
        )
    human = f"{result.role} {result.node_name} {verb}" + "".join(f"; {n}" for n in notes if n)
    render.emit(result.to_json(), as_json, human)
    if result.decoding and not as_json:
        render.message(result.decoding)
    for warning in result.warnings:
        render.warn(warning)


@click.command()
@click.option(
    "--remote-list", "remote_list", type=LIST_ID, required=True, metavar="L", help="The Leader's list id."
)
@click.option(
    "--remote-url",
    "remote_url",
    required=True,
    metavar="URL",
    help="The Leader's web address (http[s]://host[:port], where it runs serve) or its PostgreSQL URL.",
)
@click.option(
    "--local-list",
    "local_list",
    type=LIST_ID,
    required=True,
    metavar="T",
    help="This Subscriber's (empty) list id.",
)
@click.option("--schedule", metavar="RRULE", help="Sync windows for this link (overrides the Leader's).")
@click.option(
    "--fallback-url",
    "fallback_urls",
    multiple=True,
    metavar="URL",
    help="Another upstream of the same list (a second relay, the Leader itself), PostgreSQL URL without "
    "a password; repeatable. tick moves the link's stream there when its upstream stays unreachable.",
)
@click.option(
    "--timeout",
    type=SECONDS,
    default=copier.COPY_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the initial copy.",
)
@json_option
@pass_app
def attach(
    app: AppContext,
    remote_list: int,
    remote_url: str,
    local_list: int,
    schedule: str | None,
    fallback_urls: tuple[str, ...],
    timeout: float,
    as_json: bool,
) -> None:
    """Make local list T a read-only replica of Leader list L."""
    if schedule:
        from pgsync_dossier.schedule import Schedule

        try:
            schedule = Schedule.parse(schedule).text
        except ValueError as exc:
            raise click.BadParameter(f"invalid RRULE: {exc}", param_hint="--schedule") from None
    request = links.AttachRequest(remote_list, remote_url, local_list, schedule, fallback_urls)
    result = _with_progress(
        as_json, lambda progress: links.attach(app.config, request, timeout_s=timeout, on_progress=progress)
    )
    _emit_copy(
        result, as_json, f"list {local_list} now replicates Leader list {remote_list} ({result.leader})"
    )


def _with_progress(as_json: bool, run: Callable[[Progress], R]) -> R:
    """Run a copying operation with a progress bar on a terminal (never in --json mode)."""
    progress = _CopyProgress(enabled=sys.stderr.isatty() and not as_json)
    try:
        return run(progress.update)
    finally:
        progress.close()


def _emit_copy(result: LinkResult, as_json: bool, headline: str) -> None:
    if result.synced:
        done = f"{result.dossiers} dossiers and {result.faces} faces copied"
    elif result.first_sync_pending:
        done = "its copy runs at the next sync or tick"
    else:  # the same link, made earlier and copied: nothing to do
        here = f"{result.dossiers} dossiers and {result.faces} faces here"
        done = f"it already did ({result.state}, {here}); nothing was copied"
    render.emit(result.to_json(), as_json, f"{headline}: {done}")


class _CopyProgress:
    """A progress bar on a terminal while the initial copy runs; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def update(self, copied: int, expected: int) -> None:
        if not self.enabled or expected < 1000:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=expected, label="copying rows", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(copied - self.bar.pos)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@click.command()
@click.argument("local_list", type=LIST_ID, metavar="T")
@click.option("--purge", is_flag=True, help="Also delete the list's dossiers on this Subscriber.")
@click.option(
    "--timeout",
    type=SECONDS,
    default=links.DETACH_BARRIER_S,
    show_default=True,
    help="How long the group's stream may take to catch up with the Leader first.",
)
@json_option
@pass_app
def detach(app: AppContext, local_list: int, purge: bool, timeout: float, as_json: bool) -> None:
    """Cancel replication of list T; it becomes an ordinary writable list."""
    result = links.detach(app.config, local_list, purge, barrier_s=timeout)
    in_transit = result.kept_in_transit
    human = (
        f"list {local_list} detached"
        + ("" if result.leader_reachable else "; the Leader is down: it is cleaned up when it is back")
        + (
            "; the stream did not catch up with the Leader first (the log says why): the list may "
            "lack the Leader's latest changes"
            if result.leader_reachable and not result.caught_up and not purge
            else ""
        )
        + (f"; {result.purged_dossiers} dossiers purged" if purge else "")
        + (
            f"; {in_transit} dossiers the Leader moved into other lists of its group stay until "
            "their move arrives (the stream had not caught up)"
            if in_transit
            else ""
        )
    )
    render.emit(result.to_json(), as_json, human)


@click.command()
@click.argument("local_list", type=LIST_ID, metavar="T")
@click.option("--confirm", is_flag=True, help="Required: list T's local rows are made the Leader's.")
@click.option("--timeout", type=SECONDS, default=copier.COPY_TIMEOUT_S, show_default=True)
@json_option
@pass_app
def repair(app: AppContext, local_list: int, confirm: bool, timeout: float, as_json: bool) -> None:
    """Bring replica T back to its Leader list in place (a diverged replica, a lost slot)."""
    if not confirm:
        raise click.UsageError("repair makes the list's rows the Leader's: pass --confirm")
    result = _with_progress(
        as_json,
        lambda progress: links.repair(app.config, local_list, timeout_s=timeout, on_progress=progress),
    )
    differences = result.differences
    if differences is None:  # its copy was owed: the list was copied instead
        _emit_copy(result, as_json, f"list {local_list} copied from Leader list {result.remote_list}")
        return
    counts = (
        ("missing", differences.missing),
        ("extra", differences.extra),
        ("changed", differences.changed),
    )
    found = ", ".join(f"{n} {kind}" for kind, n in counts if n)
    human = (
        f"list {local_list} repaired in place from Leader list {result.remote_list}: "
        + (f"{found} rows fixed" if found else "nothing differed")
        + f"; {result.dossiers} dossiers and {result.faces} faces"
    )
    render.emit(result.to_json(), as_json, human)


@click.command("status")
@click.argument("local_list", type=LIST_ID, required=False, metavar="[T]")
@click.option(
    "--published",
    is_flag=True,
    help="On a relay: the lists it publishes and its downstream Subscribers, as on a Leader.",
)
@json_option
@pass_app
def status_command(app: AppContext, local_list: int | None, published: bool, as_json: bool) -> None:
    """Links, lag and retained WAL (on a Leader: published lists and their Subscribers)."""
    if published and app.config.role == "subscriber":
        raise click.UsageError("--published is for a Leader or a relay; this node is a subscriber")
    if app.config.role == "leader" or published:
        rows = status.leader_status(app.config)
        flat = [
            {"list": r.list, "name": r.list_name, "dossiers": r.dossiers, "faces": r.faces, **stream}
            for r in rows
            for stream in ([asdict(s) for s in r.subscribers] or [{}])
        ]
        render.emit([asdict(r) for r in rows], as_json, render.table(flat))
        if not as_json:
            render.message(status.leader_decoding(app.config))
        for warning in status.leader_warnings(app.config):
            render.warn(warning)
        return
    columns = [
        "local_list",
        "remote_list",
        "leader",
        "state",
        "stream",
        "dossiers",
        "leader_dossiers",
        "lag_bytes",
        "lag_seconds",
        "leader_time_reached",
        "retained_wal_bytes",
        "wal_status",
        "last_sync",
        "verified",
        "last_error",
    ]
    docs = [r.as_json() for r in status.subscriber_status(app.config, local_list)]
    render.emit(docs, as_json, render.table(docs, columns))


@click.command("leader-unavailable")
@click.argument("local_list", type=LIST_ID, metavar="T")
@click.option("--confirm", is_flag=True, help="Required: local deletes in list T become possible.")
@click.option("--clear", is_flag=True, help="Record the Leader as available again.")
@pass_app
def leader_unavailable(app: AppContext, local_list: int, confirm: bool, clear: bool) -> None:
    """Declare list T's Leader unavailable, so its dossiers may be deleted locally."""
    if not confirm and not clear:
        raise click.UsageError("pass --confirm to declare the Leader unavailable, or --clear")
    links.set_leader_available(app.config, local_list, clear)
    render.message(
        f"list {local_list}: its Leader is recorded as available; local deletes are refused again"
        if clear
        else f"list {local_list}: its Leader is recorded as unavailable (for every list it serves here); "
        "local deletes are allowed until it is reachable again"
    )
