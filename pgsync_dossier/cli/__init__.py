"""Command line: parse, call one domain function, render. No domain logic lives here."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import click
import psycopg

from pgsync_dossier import __version__
from pgsync_dossier.cli.context import AppContext
from pgsync_dossier.errors import PgsyncError, ServerUnreachable


class PgsyncGroup(click.Group):
    """Turns every failure into one line on stderr and the exit code its class documents."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PgsyncError as exc:
            if _debug(ctx):
                traceback.print_exc()
            click.secho(f"error: {exc}", err=True, fg="red")
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except psycopg.OperationalError as exc:  # a server went away or gave up mid-command
            if _debug(ctx):
                traceback.print_exc()
            reason = exc.diag.message_primary or str(exc).strip().splitlines()[-1]
            click.secho(f"error: a server stopped answering: {reason}", err=True, fg="red")
            ctx.exit(ServerUnreachable.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # a bug: say so, keep the details out of the user's way
            report = _write_crash_report()
            if _debug(ctx):
                traceback.print_exc()
            click.secho(
                f"internal error: {type(exc).__name__}; this is a bug in pgsync-dossier. "
                f"Details: {report} (rerun with --debug to see them here)",
                err=True,
                fg="red",
            )
            ctx.exit(1)


def _debug(ctx: click.Context) -> bool:
    return isinstance(ctx.obj, AppContext) and ctx.obj.debug


def _write_crash_report() -> str:
    directory = Path(os.environ.get("XDG_STATE_HOME") or tempfile.gettempdir())
    path = directory / f"pgsync-dossier-crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            traceback.print_exc(file=out)
    except OSError:
        return "(no crash report could be written)"
    return str(path)


@click.group(
    cls=PgsyncGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Node config file. Default: $PGSYNC_DOSSIER_CONFIG, else /etc/pgsync-dossier/config.yaml.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what is being done (stderr).")
@click.option("--debug", is_flag=True, help="Log everything and show tracebacks (stderr).")
@click.version_option(__version__, prog_name="pgsync-dossier")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool, debug: bool) -> None:
    """Keep dossier (watch) lists in sync between a Leader and its Subscribers."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = AppContext(config_option=config_path, debug=debug)


def _register() -> None:
    from pgsync_dossier.cli import api_cmds, config_cmds, demo_cmds, link_cmds, schema_cmds, sync_cmds

    for module in (config_cmds, schema_cmds, link_cmds, sync_cmds, api_cmds, demo_cmds):
        module.register(cli)


_register()


def main() -> None:
    cli(prog_name="pgsync-dossier")
