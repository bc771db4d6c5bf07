"""Command line: parse, call one domain function, render. No domain logic lives here."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import click

from pgsync_dossier import __version__
from pgsync_dossier.cli.context import AppContext
from pgsync_dossier.errors import PgsyncError, UsageError

log = logging.getLogger("pgsync_dossier")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    from pgsync_dossier.cli import config_cmds, schema_cmds

    for module in (config_cmds, schema_cmds):
        module.register(cli)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: every failure becomes one line on stderr and a documented exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="pgsync-dossier", standalone_mode=False)
    except PgsyncError as exc:
        if debug:
            traceback.print_exc()
        click.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(UsageError.exit_code if isinstance(exc, click.UsageError) else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so, keep the details out of the user's way
        report = _write_crash_report()
        if debug:
            traceback.print_exc()
        click.secho(
            f"internal error: {type(exc).__name__}; this is a bug in pgsync-dossier. "
            f"Details: {report} (rerun with --debug to see them here)",
            err=True,
            fg="red",
        )
        sys.exit(1)
    sys.exit(0)


def _write_crash_report() -> str:
    directory = Path(os.environ.get("XDG_STATE_HOME") or tempfile.gettempdir())
    path = directory / f"pgsync-dossier-crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    try:
        with path.open("w", encoding="utf-8") as out:
            os.chmod(path, 0o600)
            traceback.print_exc(file=out)
    except OSError:
        return "(could not write a crash report)"
    return str(path)
