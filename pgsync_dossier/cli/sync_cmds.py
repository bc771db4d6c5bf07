"""sync, tick, run, systemd-units."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import click

from pgsync_dossier import scheduler, systemd
from pgsync_dossier.cli import render
from pgsync_dossier.cli.context import AppContext, pass_app
from pgsync_dossier.cli.options import LIST_ID, SECONDS, json_option
from pgsync_dossier.errors import OperationFailed, UsageError, error_for_all
from pgsync_dossier.sync import SyncOutcome
from pgsync_dossier.verify import verify_lists

log = logging.getLogger(__name__)

_COLUMNS = ["local_list", "group", "reason", "status", "copied", "barrier_seq", "finished_at", "error"]


def _emit(outcomes: list[SyncOutcome], as_json: bool) -> None:
    rows = [outcome.as_dict() for outcome in outcomes]
    render.emit(rows, as_json, render.table(rows, _COLUMNS))


@click.command()
@click.argument("local_lists", type=LIST_ID, nargs=-1, metavar="[T]...")
@click.option("--all", "all_lists", is_flag=True, help="Sync every link.")
@click.option("--timeout", type=SECONDS, default=scheduler.DEFAULT_TICK_TIMEOUT_S, show_default=True)
@json_option
@pass_app
def sync(
    app: AppContext, local_lists: tuple[int, ...], all_lists: bool, timeout: float, as_json: bool
) -> None:
    """Sync lists now; exit 0 only when every one reached its barrier."""
    if bool(local_lists) == all_lists:
        raise UsageError("name the lists to sync (T...) or pass --all")
    outcomes = scheduler.sync_lists(app.config, list(local_lists) or None, "manual", timeout)
    _emit(outcomes, as_json)
    failed = [o for o in outcomes if o.status != "synced"]
    if failed:
        message = "not synced: " + "; ".join(f"list {o.local_list} {o.status} ({o.error})" for o in failed)
        # the class of the lists' common code (unreachable: exit 4, schema_mismatch: 3), else exit 1
        codes = {o.code for o in failed}
        raise error_for_all(codes)(message, code=codes.pop() if len(codes) == 1 else None)


@click.command()
@click.option("--startup", is_flag=True, help="Sync every link whose Leader asks for sync_at_startup.")
@click.option("--timeout", type=SECONDS, default=scheduler.DEFAULT_TICK_TIMEOUT_S, show_default=True)
@json_option
@pass_app
def tick(app: AppContext, startup: bool, timeout: float, as_json: bool) -> None:
    """One scheduler step (for a systemd timer): sync what is due, probe the rest."""
    outcomes = scheduler.tick(app.config, startup=startup, timeout_s=timeout)
    for outcome in outcomes:
        if outcome.status == "busy":
            render.message(f"list {outcome.local_list}: skipped, another sync is running")
    _emit(outcomes, as_json)
    if any(o.status == "failed" for o in outcomes):
        raise OperationFailed("some syncs failed; they are retried at the next tick")


@click.command()
@click.option("--timeout", type=SECONDS, default=scheduler.DEFAULT_TICK_TIMEOUT_S, show_default=True)
@pass_app
def run(app: AppContext, timeout: float) -> None:
    """Run the scheduler until SIGTERM/SIGINT (alternative to the systemd timer)."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        render.message(f"received {signal.Signals(signum).name}: stopping after the current sync")
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def report(outcomes: list[SyncOutcome]) -> None:
        for o in outcomes:
            render.message(
                f"list {o.local_list}: {o.reason} sync {o.status}" + (f" ({o.error})" if o.error else "")
            )

    render.message(f"pgsync-dossier scheduler started for {app.config.node_name}")
    scheduler.run_forever(app.config, stop, report, timeout_s=timeout)
    render.message("pgsync-dossier scheduler stopped")


@click.command("systemd-units")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), help="Write the units here.")
@click.option("--user", default="pgsync-dossier", show_default=True, help="The service user.")
@click.option("--executable", help="Path of pgsync-dossier (default: the one running).")
@pass_app
def systemd_units(app: AppContext, output: Path | None, user: str, executable: str | None) -> None:
    """Write the systemd units: a tick timer (+ start-up unit) or the run service."""
    from pgsync_dossier import config as config_module

    config_path = config_module.resolve_path(app.config_option).resolve()
    made = systemd.units(config_path, user, executable, app.config.sync_at_startup)
    if output is None:
        for name, text in made.items():
            click.echo(f"# --- {name}\n{text}")
        return
    output.mkdir(parents=True, exist_ok=True)
    for name, text in made.items():
        (output / name).write_text(text, encoding="utf-8")
    render.message(
        f"wrote {', '.join(made)} to {output}; install with: cp {output}/{systemd.UNIT_PREFIX}* "
        "/etc/systemd/system/ && systemctl daemon-reload && "
        f"systemctl enable --now {systemd.UNIT_PREFIX}-tick.timer"
    )


@click.command()
@click.argument("local_list", type=LIST_ID, required=False, metavar="[T]")
@click.option("--timeout", type=SECONDS, default=scheduler.DEFAULT_TICK_TIMEOUT_S, show_default=True)
@click.option("--repair", is_flag=True, help="Repair in place the replicas found different.")
@json_option
@pass_app
def verify(app: AppContext, local_list: int | None, timeout: float, repair: bool, as_json: bool) -> None:
    """Sync, then check that each replica holds exactly its Leader list (exit 1 if not): the
    rows missing, extra or changed here."""
    rows = verify_lists(app.config, local_list, timeout, repair=repair)
    columns = [
        "local_list",
        "remote_list",
        "match",
        "dossiers",
        "leader_dossiers",
        "faces",
        "leader_faces",
        "missing",
        "extra",
        "changed",
        *(["repaired"] if repair else []),
        "error",
    ]
    documents = [row.as_json() for row in rows]
    render.emit(documents, as_json, render.table(documents, columns))
    bad = [r for r in rows if not r.match]
    if bad:
        raise OperationFailed(
            "replicas differ from their Leader lists: "
            + "; ".join(
                f"list {r.local_list}"
                + (f" ({r.missing} missing, {r.extra} extra, {r.changed} changed)" if r.error is None else "")
                for r in bad
            )
            + ("" if repair else "; repair them with pgsync-dossier verify --repair")
        )
