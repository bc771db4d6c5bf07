"""One voice for errors (docs/cli.md#errors), where no server is needed: every text error starts
with `error: `; with --json the same error is `{"code", "message"}` on stdout, whatever stage
failed (click's parsing included), with the exit code of its class; a bad argument is refused
in the command's words; --help shows the commands by who runs them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import quote

import click
import pytest
from click.testing import CliRunner, Result

from pgsync_dossier.cli import COMMANDS, SECTIONS, cli
from pgsync_dossier.clusters import free_port
from tests.harness import EXECUTABLE

PASSWORD = "s3cret pw'"


def _config(tmp_path: Path, port: int | None = None) -> Path:
    """A Subscriber's config whose database is nowhere (a port nothing listens on)."""
    path = tmp_path / "node.yaml"
    url = f"postgresql://me:{quote(PASSWORD, safe='')}@127.0.0.1:{port or free_port()}/dossiers"
    token = "T0ken-" + "x" * 40
    path.write_text(
        f'role: subscriber\nnode_name: site-b\ndatabase_url: "{url}"\n'
        f'sync_token: "{token}"\nface_model: arcface-v1\n'
    )
    return path


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="pgsync-dossier")


def _error(result: Result) -> dict[str, str]:
    """The JSON error on stdout: one object, with exactly these keys."""
    document: dict[str, str] = json.loads(result.stdout)
    assert list(document) == ["code", "message"] and "\n" not in document["message"], document
    return document


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["detach", "abc"], "T must be a list id, a whole number from 1 to 2147483647, not 'abc'"),
        (["repair", "3000000000"], "T must be a list id, a whole number from 1 to 2147483647, not '3000"),
        (["sync", "1", "x"], "T must be a list id, a whole number from 1 to 2147483647, not 'x'"),
        (
            ["attach", "--remote-list", "L1", "--remote-url", "postgresql://h/d", "--local-list", "1"],
            "--remote-list must be a list id, a whole number from 1 to 2147483647, not 'L1'",
        ),
        (["verify", "1", "--timeout", "soon"], "--timeout must be a number of seconds, positive and finite"),
        (
            ["tick", "--timeout", "inf"],
            "--timeout must be a number of seconds, positive and finite, not 'inf'",
        ),
        (["init-config", "--role", "boss"], "--role must be leader, subscriber or relay, not 'boss'"),
        (["serve", "--port", "0"], "--port must be a TCP port, a whole number from 1 to 65535, not '0'"),
    ],
)
def test_a_bad_argument_is_refused_in_the_commands_words(tmp_path: Path, args: list[str], says: str) -> None:
    result = _run("--config", str(_config(tmp_path)), *args)
    assert result.exit_code == 2, result.output
    first, *hint = result.stderr.splitlines()
    assert first.startswith(f"error: {says}"), result.stderr
    assert hint[-1].startswith(f"Try 'pgsync-dossier {args[0]} --help'")  # click's hint stays, after
    assert result.stdout == "" and "Invalid value" not in result.output


@pytest.mark.parametrize(
    ("args", "code", "exit_code", "says"),
    [
        (["detach", "abc", "--json"], "usage", 2, "T must be a list id"),
        (["attach", "--json"], "usage", 2, "missing option '--remote-list'"),
        (["sync", "--json"], "usage", 2, "name the lists to sync"),  # the command's own check
        (["status", "--json", "--bogus"], "usage", 2, "no such option '--bogus'"),
        (["no-such-command", "--json"], "usage", 2, "no such command 'no-such-command'"),
        (
            ["--config", "/nowhere/node.yaml", "config", "check", "--json"],
            "config",
            2,
            "config file not found",
        ),
        (["status", "--json"], "unreachable", 4, "cannot reach this node's database"),
    ],
)
def test_json_errors_go_to_stdout_with_the_same_exit_code(
    tmp_path: Path, args: list[str], code: str, exit_code: int, says: str
) -> None:
    """Also when click fails before it has parsed --json; stderr keeps the text error."""
    given = args if args[0] == "--config" else ["--config", str(_config(tmp_path)), *args]
    result = _run(*given)
    assert result.exit_code == exit_code, result.output
    error = _error(result)
    assert error["code"] == code and says in error["message"], error
    assert result.stderr.startswith(f"error: {error['message']}\n")
    assert PASSWORD not in result.output and "s3cret" not in result.output


def test_without_json_stdout_stays_empty(tmp_path: Path) -> None:
    result = _run("--config", str(_config(tmp_path)), "status")
    assert (result.exit_code, result.stdout) == (4, "")
    assert (
        result.stderr.startswith("error: cannot reach this node's database") and "s3cret" not in result.stderr
    )


def test_a_json_after_the_end_of_the_options_is_an_argument(tmp_path: Path) -> None:
    result = _run("--config", str(_config(tmp_path)), "detach", "--", "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(
        "error: T must be a list id, a whole number from 1 to 2147483647, not '--json'"
    )


def test_a_bug_is_an_internal_error_with_a_crash_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug with s3cret inside")

    monkeypatch.setattr("pgsync_dossier.config.load", broken)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    result = _run("--config", str(_config(tmp_path)), "config", "check", "--json")
    assert result.exit_code == 1
    error = _error(result)
    assert error["code"] == "internal" and "RuntimeError; this is a bug" in error["message"]
    assert (
        result.stderr.startswith("error: internal error: RuntimeError") and "Traceback" not in result.output
    )
    assert "s3cret" not in result.output  # the exception's text goes to the report only
    (report,) = tmp_path.glob("pgsync-dossier-crash-*.log")
    assert str(report) in error["message"] and "a bug with s3cret inside" in report.read_text()


def test_an_interrupt_exits_130_without_a_json_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("pgsync_dossier.config.load", interrupted)
    result = _run("--config", str(_config(tmp_path)), "config", "check", "--json")
    assert (result.exit_code, result.stdout) == (130, "")
    assert "error: interrupted" in result.stderr


def test_a_failure_after_the_result_leaves_stdout_one_document(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that printed its result and then fails (sync, verify, tick: the rows say which
    lists failed) prints no second document: the error is on stderr and in the exit code."""
    from pgsync_dossier.cli import render
    from pgsync_dossier.errors import PreconditionFailed

    @click.command()
    @click.option("--json", "as_json", is_flag=True)
    def half(as_json: bool) -> None:
        render.emit([{"local_list": 1, "status": "paused"}], as_json, "paused")
        raise PreconditionFailed("not synced: list 1 paused", code="paused")

    monkeypatch.setattr(type(cli), "get_command", lambda _self, _ctx, _name: half)
    result = _run("half", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout) == [{"local_list": 1, "status": "paused"}]
    assert result.stderr == "error: not synced: list 1 paused\n"


def test_no_error_says_Error_with_a_capital(tmp_path: Path) -> None:
    for args in (["detach"], ["attach"], ["--bogus"], ["init-config"], ["api-token", "create"], ["nope"]):
        result = _run("--config", str(_config(tmp_path)), *args)
        assert result.exit_code == 2 and result.stderr.startswith("error: "), (args, result.stderr)
        assert "Error:" not in result.output


def test_help_groups_the_commands_by_role() -> None:
    result = _run("--help")
    assert result.exit_code == 0
    titles = [line.removesuffix(":") for line in result.stdout.splitlines() if line.startswith("Commands")]
    assert titles == list(SECTIONS)
    assert titles[:3] == [
        "Commands for both a Leader and a Subscriber",
        "Commands for a Leader",
        "Commands for a Subscriber",
    ]
    commands = result.stdout.split("\nCommands for both")[1]
    listed = [line.split()[0] for line in commands.splitlines() if line.startswith("  ")]
    assert sorted(listed) == sorted(COMMANDS)  # each command once, under one section
    section_of = {name: title for title, names in SECTIONS.items() for name in names}
    assert {section_of[name] for name in ("attach", "detach", "sync", "verify", "repair", "tick", "run")} == {
        "Commands for a Subscriber"
    }
    assert {section_of[name] for name in ("subscribers", "approve", "revoke")} == {"Commands for a Leader"}
    assert section_of["setup"] == section_of["status"] == "Commands for both a Leader and a Subscriber"


def test_the_commands_keep_their_names() -> None:
    before = {"init-config", "config", "migrate", "prepare-upgrade", "setup", "attach", "detach", "repair"}
    before |= {"status", "leader-unavailable", "sync", "tick", "run", "verify", "systemd-units", "serve"}
    before |= {"api-token", "subscribers", "approve", "revoke", "demo"}
    assert set(COMMANDS) == before


def test_the_installed_entry_point_speaks_the_same(tmp_path: Path) -> None:
    done = subprocess.run(
        [EXECUTABLE, "--config", str(_config(tmp_path)), "detach", "abc", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert json.loads(done.stdout) == {
        "code": "usage",
        "message": "T must be a list id, a whole number from 1 to 2147483647, not 'abc'",
    }
    assert done.stderr.startswith("error: T must be a list id")
