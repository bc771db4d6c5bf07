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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from pgsync_dossier import __version__
from pgsync_dossier.cli import render
from pgsync_dossier.cli.context import AppContext
from pgsync_dossier.cli.options import Expected
from pgsync_dossier.errors import (
    DeadlineExceeded,
    OperationFailed,
    PgsyncError,
    ServerUnreachable,
    UsageError,
)

#: The commands by who runs them, as --help groups them: section -> command -> "module:attribute"
#: of its click command.
SECTIONS: dict[str, dict[str, str]] = {
    "Commands for both a Leader and a Subscriber": {
        "init-config": "config_cmds:init_config",
        "config": "config_cmds:config_group",
        "migrate": "schema_cmds:migrate",
        "setup": "link_cmds:setup",
        "status": "link_cmds:status_command",
        "api-token": "token_cmds:api_token",
        "serve": "api_cmds:serve",
        "prepare-upgrade": "schema_cmds:prepare_upgrade",
    },
    "Commands for a Leader": {
        "subscribers": "leader_cmds:subscribers",
        "approve": "leader_cmds:approve",
        "revoke": "leader_cmds:revoke",
    },
    "Commands for a Subscriber": {
        "attach": "link_cmds:attach",
        "detach": "link_cmds:detach",
        "sync": "sync_cmds:sync",
        "verify": "sync_cmds:verify",
        "repair": "link_cmds:repair",
        "tick": "sync_cmds:tick",
        "run": "sync_cmds:run",
        "systemd-units": "sync_cmds:systemd_units",
        "leader-unavailable": "link_cmds:leader_unavailable",
    },
    "Commands without a node": {
        "demo": "demo_cmds:demo",
    },
}
#: command name -> "module:attribute" of its click command.
COMMANDS = {name: target for section in SECTIONS.values() for name, target in section.items()}
#: What a command interrupted (Ctrl-C, SIGINT) exits with: 128 + the signal's number.
INTERRUPTED_EXIT = 130


def _timed_out(exc: BaseException) -> bool:
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.errors.QueryCanceled)


def _connection_lost(exc: BaseException) -> bool:
    """A psycopg OperationalError, without importing psycopg for commands that never do."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


class PgsyncGroup(click.Group):
    """Turns every failure into one `error:` line on stderr (and, with --json, a `{"code",
    "message"}` object on stdout) and the exit code its class documents; --help shows the
    commands by who runs them."""

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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        width = max(map(len, COMMANDS))
        limit = formatter.width - 6 - width
        for title, names in SECTIONS.items():
            rows = [
                (name.ljust(width), command.get_short_help_str(limit))
                for name in names
                if (command := self.get_command(ctx, name)) is not None and not command.hidden
            ]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        """Every failure leaves as a PgsyncError (main reports it); the traceback with --debug."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:
            if _debug(ctx):
                traceback.print_exc()
            if isinstance(exc, PgsyncError):
                raise
            raise _unexpected(exc) from exc

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's main, reporting failures in one voice. Whether they are reported in JSON is
        read from the raw arguments: click may fail before it has parsed the command's --json
        (`detach abc --json`)."""
        arguments = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(arguments, prog_name, complete_var, standalone_mode=False, **extra)
        as_json = _asks_for_json(arguments)
        render.forget_result()
        try:
            returned = super().main(arguments, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # click >= 8.2: `pgsync-dossier` alone prints the help
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            _report(UsageError(_click_message(exc)), as_json, hint=_usage_hint(exc))
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _report(OperationFailed(_click_message(exc)), as_json)
            sys.exit(exc.exit_code)
        except PgsyncError as exc:
            _report(exc, as_json)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:  # Ctrl-C: the exit code says so, no JSON for a stop asked for
            click.secho("error: interrupted", err=True, fg="red")
            sys.exit(INTERRUPTED_EXIT)
        # without standalone mode, click returns the code of an exit (--help: 0); commands return None
        sys.exit(returned if isinstance(returned, int) else 0)


_NO_ARGS_IS_HELP: type[click.UsageError] | tuple[()] = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _asks_for_json(arguments: Sequence[str]) -> bool:
    """Whether --json is among the options (before a `--`, after which all are arguments)."""
    end = arguments.index("--") if "--" in arguments else len(arguments)
    return "--json" in arguments[:end]


def _report(error: PgsyncError, as_json: bool, hint: str = "") -> None:
    render.error(error.code, str(error), as_json, hint)


def _click_message(exc: click.ClickException) -> str:
    """click's message in our voice: `missing option '--remote-list'`; a value refused by our
    types names its parameter first (`T must be ...`) and stays as it is."""
    message = exc.format_message()
    if isinstance(exc, Expected):
        return message
    return (message[:1].lower() + message[1:]).removesuffix(".")


def _usage_hint(exc: click.UsageError) -> str:
    """click's usage line and where to find help, after the error line."""
    if exc.ctx is None:
        return ""
    help_option = max(exc.ctx.help_option_names, key=len)
    return f"{exc.ctx.get_usage()}\nTry '{exc.ctx.command_path} {help_option}' for help."


def _unexpected(exc: Exception) -> PgsyncError:
    """An exception no module raised on purpose: a server that went away, or a bug."""
    if _timed_out(exc):  # a statement ran past its time limit: the server is fine
        reason = exc.diag.message_primary or str(exc).strip().splitlines()[-1]  # type: ignore[attr-defined]
        return DeadlineExceeded(f"a statement ran out of time ({reason}); run the command again")
    if _connection_lost(exc):  # a server went away or gave up mid-command
        reason = exc.diag.message_primary or str(exc).strip().splitlines()[-1]  # type: ignore[attr-defined]
        return ServerUnreachable(f"a server stopped answering: {reason}")
    # a bug: say so, keep the details out of the user's way
    return PgsyncError(
        f"internal error: {type(exc).__name__}; this is a bug in pgsync-dossier. "
        f"Details: {_write_crash_report(exc)} (rerun with --debug to see them here)",
        code="internal",
    )


def _debug(ctx: click.Context) -> bool:
    return isinstance(ctx.obj, AppContext) and ctx.obj.debug


def _write_crash_report(exc: Exception) -> str:
    directory = Path(os.environ.get("XDG_STATE_HOME") or tempfile.gettempdir())
    path = directory / f"pgsync-dossier-crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            traceback.print_exception(exc, file=out)
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
