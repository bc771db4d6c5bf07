"""Command line: parse, call one domain function, render. No domain logic lives here.

Each command's module is imported only when that command runs, so `config check` does not
pay for psycopg and `status` does not pay for Alembic, SQLAlchemy or FastAPI.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import click

from pgsync_dossier import __version__
from pgsync_dossier.cli.context import AppContext
from pgsync_dossier.cli.render import printable
from pgsync_dossier.errors import PgsyncError, ServerUnreachable

#: command name -> "module:attribute" of its click command.
COMMANDS = {
    "init-config": "config_cmds:init_config",
    "config": "config_cmds:config_group",
    "migrate": "schema_cmds:migrate",
    "prepare-upgrade": "schema_cmds:prepare_upgrade",
    "setup": "link_cmds:setup",
    "attach": "link_cmds:attach",
    "detach": "link_cmds:detach",
    "repair": "link_cmds:repair",
    "status": "link_cmds:status_command",
    "leader-unavailable": "link_cmds:leader_unavailable",
    "sync": "sync_cmds:sync",
    "tick": "sync_cmds:tick",
    "run": "sync_cmds:run",
    "verify": "sync_cmds:verify",
    "systemd-units": "sync_cmds:systemd_units",
    "serve": "api_cmds:serve",
    "api-token": "token_cmds:api_token",
    "subscribers": "leader_cmds:subscribers",
    "approve": "leader_cmds:approve",
    "revoke": "leader_cmds:revoke",
    "demo": "demo_cmds:demo",
}


def _connection_lost(exc: BaseException) -> bool:
    """A psycopg OperationalError, without importing psycopg for commands that never do."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


class PgsyncGroup(click.Group):
    """Turns every failure into one line on stderr and the exit code its class documents."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name].split(":")
        command: click.Command = getattr(importlib.import_module(f"pgsync_dossier.cli.{module}"), attribute)
        if not gc.isenabled():  # main() turned the collector off while the modules load
            gc.freeze()
            gc.enable()
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PgsyncError as exc:
            if _debug(ctx):
                traceback.print_exc()
            click.secho(f"error: {printable(str(exc), keep_newlines=False)}", err=True, fg="red")
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if _connection_lost(exc):  # a server went away or gave up mid-command
                if _debug(ctx):
                    traceback.print_exc()
                reason = exc.diag.message_primary or str(exc).strip().splitlines()[-1]  # type: ignore[attr-defined]
                click.secho(f"error: a server stopped answering: {reason}", err=True, fg="red")
                ctx.exit(ServerUnreachable.exit_code)
            # a bug: say so, keep the details out of the user's way
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


def main() -> None:
    # Most of a short command's process is importing modules: the collector would walk their
    # objects again and again while they load, and all of them once more at exit. It stays off
    # until the command's module is loaded; then what is loaded is frozen (never walked again)
    # and it collects the command's own garbage as usual (get_command).
    gc.disable()
    cli(prog_name="pgsync-dossier")
