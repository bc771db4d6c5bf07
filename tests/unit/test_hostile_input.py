"""Hostile or careless input: a clear one-line error and exit code 2, before any SQL, with no
secret echoed. None of these needs a server: each is refused before one is reached."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pgsync_dossier import config
from pgsync_dossier.cli import cli
from pgsync_dossier.conninfo import mask_conninfo
from pgsync_dossier.errors import ConfigError
from tests.unit.test_config import GOOD, TOKEN, write


@pytest.mark.parametrize(
    "args",
    [
        ["repair", "3000000000"],
        ["attach", "--remote-list", "3000000000", "--remote-url", "postgresql://h/d", "--local-list", "1"],
        ["attach", "--remote-list", "1", "--remote-url", "postgresql://h/d", "--local-list", "0"],
        ["sync", "--timeout", "nan", "1"],
        ["sync", "--all", "--timeout", "inf"],
        ["tick", "--timeout", "-1"],
        ["verify", "1", "--timeout", "soon"],
    ],
)
def test_out_of_range_ids_and_endless_timeouts_are_refused_before_any_sql(
    tmp_path: Path, args: list[str]
) -> None:
    result = CliRunner().invoke(cli, ["--config", str(write(tmp_path, GOOD)), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and " must be " in result.stderr
    assert "Traceback" not in result.output


def test_a_key_given_twice_is_an_error_naming_it_and_its_lines(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, GOOD + "role: leader\n"), environ={})
    assert "'role' is given twice (lines 1 and 6)" in str(caught.value)


def test_a_token_file_that_never_ends_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    text = GOOD.replace(f'sync_token: "{TOKEN}"', "sync_token_file: /dev/zero")
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, text), environ={})
    assert "/dev/zero is larger than" in str(caught.value)


def test_control_characters_in_names_are_refused_but_a_schedule_may_span_lines(tmp_path: Path) -> None:
    hostile = GOOD.replace("node_name: site-b", 'node_name: "site-b\\n\\u001b[31mHACKED"')
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, hostile), environ={})
    assert "node_name: holds control characters" in str(caught.value)
    assert "\x1b" not in str(caught.value)
    scheduled = GOOD + 'sync_schedule: "DTSTART:20240101T030000\\nRRULE:FREQ=DAILY"\n'
    assert config.load(write(tmp_path, scheduled), environ={}).sync_schedule is not None


@pytest.mark.parametrize(
    "given",
    [
        " postgresql://me:s3cret@h/d",
        "\tpostgres://me:s3cret@h/d",
        "POSTGRESQL://me:s3cret@h/d",
        "postgresql://me@h/d?password=s3cret",
        " host=h password=s3cret",
    ],
)
def test_masking_works_whatever_the_urls_form(given: str) -> None:
    assert "s3cret" not in mask_conninfo(given)


def test_names_from_elsewhere_are_printed_with_control_characters_escaped() -> None:
    """A node name that reached the catalog from another node (or an older version) cannot
    recolour the terminal, move the cursor or fake a line of output."""
    from pgsync_dossier.cli.render import printable, table

    hostile = "site-b\n\x1b[2Jfake: all good\x1b[0m"
    shown = table([{"leader": hostile, "state": "ready"}])
    assert "\x1b" not in shown and len(shown.splitlines()) == 2 and "\\x1b[2J" in shown
    assert printable("two\nlines\x07") == "two\nlines\\x07"
