"""demo: the whole product on three local clusters."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pgsync_dossier import demo as demo_module
from pgsync_dossier.cli import render
from pgsync_dossier.errors import OperationFailed


@click.command()
@click.option("--keep", is_flag=True, help="Leave the clusters running to explore; remove with --stop.")
@click.option("--stop", "stop_", is_flag=True, help="Remove a demo left running by --keep.")
@click.option("--dossiers", type=int, default=3000, show_default=True, help="Dossiers created on the Leader.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=demo_module.DEFAULT_DIR,
    show_default=True,
)
def demo(keep: bool, stop_: bool, dossiers: int, directory: Path) -> None:
    """A Leader and two Subscribers on local clusters: attach, edit, sync, status, verify."""
    if stop_:
        removed = demo_module.stop(directory)
        render.message(f"demo in {directory} removed" if removed else f"no demo is running in {directory}")
        return
    bar: dict[str, Any] = {}

    def progress(copied: int, expected: int) -> None:
        if not sys.stderr.isatty():
            return
        if "bar" not in bar:
            bar["bar"] = click.progressbar(length=max(expected, 1), label="  copying rows", file=sys.stderr)
            bar["bar"].__enter__()
        bar["bar"].update(max(0, min(copied, expected) - bar["bar"].pos))
        if copied >= expected:
            bar.pop("bar").__exit__(None, None, None)

    result = demo_module.run(directory, dossiers, keep, narrate=render.message, progress=progress)
    columns = [
        "local_list",
        "local_list_name",
        "remote_list",
        "leader",
        "state",
        "dossiers",
        "leader_dossiers",
        "faces",
        "leader_faces",
        "lag_bytes",
        "wal_status",
    ]
    click.echo(render.table(result.status, columns))
    render.message(f"demo finished in {result.seconds}s")
    if keep:
        for site in result.sites:
            render.message(
                f"  {site.name} ({site.role}): pgsync-dossier --config {site.config} status   |   {site.psql}"
            )
        render.message(f"remove it with: pgsync-dossier demo --stop --dir {directory}")
    if not result.match:
        raise OperationFailed("a replica does not match its Leader list")
