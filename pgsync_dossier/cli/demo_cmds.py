"""demo: the whole product on three local clusters."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pgsync_dossier import demo as demo_module
from pgsync_dossier.cli import render
from pgsync_dossier.cli.options import Integer
from pgsync_dossier.errors import OperationFailed

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

#: The columns of the demo's status tables.
COLUMNS = (
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
)
ENTRY_POINT = "pgsync-dossier"


@click.command()
@click.option("--keep", is_flag=True, help="Leave the clusters running to explore; remove with --stop.")
@click.option("--stop", "stop_", is_flag=True, help="Remove a demo left running by --keep.")
@click.option(
    "--dossiers",
    type=Integer("a number of dossiers", 20, 1_000_000),
    default=3000,
    show_default=True,
    help="Dossiers created on the Leader.",
)
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
    result = demo_module.run(directory, dossiers, keep, narrate=render.message, progress=_CopyBar())
    for i, site in enumerate(result.status):
        click.echo(("\n" if i else "") + render.printable(f"{site.node_name}: status"))
        click.echo(render.table([row.as_json() for row in site.rows], COLUMNS))
    render.message(f"demo finished in {result.seconds}s")
    if keep:
        command = _command()
        for info in result.sites:
            render.message(
                f"  {info.name} ({info.role}): {command} --config {Path(info.config).absolute()} status"
                f"   |   {info.psql}"
            )
        render.message(f"remove it with: {command} demo --stop --dir {directory.absolute()}")
    if not result.match:
        raise OperationFailed("a replica does not match its Leader list")


class _CopyBar:
    """A progress bar for each list the demo copies, on a terminal only."""

    def __init__(self) -> None:
        self.bar: ProgressBar[int] | None = None

    def __call__(self, copied: int, expected: int) -> None:
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            self.bar = click.progressbar(length=max(expected, 1), label="  copying rows", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(max(0, min(copied, expected) - self.bar.pos))
        if copied >= expected:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _command() -> str:
    """This program as a person can type it after the demo: `./run demo` runs the virtualenv's
    entry point, which is not on PATH, so the hints name it by its absolute path then (./run
    changes directory first: a relative path would depend on where it was started from)."""
    beside = Path(sys.executable).parent / ENTRY_POINT
    if not beside.is_file():
        return ENTRY_POINT
    on_path = shutil.which(ENTRY_POINT)
    if on_path and Path(on_path).resolve() == beside.resolve():
        return ENTRY_POINT
    return str(beside.absolute())
