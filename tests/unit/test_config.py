"""Every bad config is one line naming the file and the key, and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pgsync_dossier import config
from pgsync_dossier.cli import cli
from pgsync_dossier.errors import ConfigError

TOKEN = "T0ken-" + "x" * 40


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(text)
    return path


GOOD = f"""\
role: subscriber
node_name: site-b
database_url: "postgresql://me@localhost/dossiers"
sync_token: "{TOKEN}"
face_model: arcface-v1
"""


def test_a_good_config_loads_with_defaults(tmp_path: Path) -> None:
    loaded = config.load(write(tmp_path, GOOD), environ={})
    assert loaded.role == "subscriber" and loaded.node_name == "site-b"
    assert loaded.sync_token.reveal() == TOKEN
    assert loaded.sync_at_startup is True and loaded.sync_at_creation is True
    assert loaded.sync_schedule is None
    assert TOKEN not in repr(loaded) and TOKEN not in str(loaded.effective())


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (GOOD + "colour: red\n", ["unknown key 'colour'"]),
        (GOOD + "sync_tokn: x\n", ["unknown key 'sync_tokn'", "did you mean 'sync_token'"]),
        (GOOD.replace("role: subscriber", "role: boss"), ["role", "'leader', 'subscriber' or 'relay'"]),
        (GOOD.replace("role: subscriber\n", ""), ["role is required"]),
        (GOOD.replace("node_name: site-b", "node_name: [a, b]"), ["node_name", "must be a string"]),
        (GOOD + "sync_at_startup: sometimes\n", ["sync_at_startup", "true or false"]),
        (GOOD + "sync_at_creation: 1\n", ["sync_at_creation", "true or false"]),
        (GOOD.replace(TOKEN, "short"), ["sync_token", "at least 32"]),
        (GOOD.replace(f'sync_token: "{TOKEN}"\n', ""), ["sync_token is required"]),
        (GOOD + "sync_token_file: /nonexistent/token\n", ["both set"]),
        (GOOD + 'sync_schedule: "FREQ=SOMETIMES"\n', ["sync_schedule", "invalid RRULE"]),
        (GOOD + "face_model: [\n", ["invalid YAML", "line"]),
        ("- a\n- b\n", ["mapping"]),
    ],
)
def test_bad_configs_name_the_file_and_key(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        config.load(path, environ={})
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert TOKEN not in message


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found.*init-config"):
        config.load(tmp_path / "absent.yaml", environ={})


def test_token_file_and_env_override(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    path = write(tmp_path, GOOD.replace(f'sync_token: "{TOKEN}"', "sync_token_file: token"))
    assert config.load(path, environ={}).sync_token.reveal() == TOKEN
    other = "E" * 48
    loaded = config.load(path, environ={"PGSYNC_DOSSIER_SYNC_TOKEN": other})
    assert loaded.sync_token.reveal() == other
    with pytest.raises(ConfigError, match="PGSYNC_DOSSIER_SYNC_TOKEN.*at least 32"):
        config.load(path, environ={"PGSYNC_DOSSIER_SYNC_TOKEN": "short"})
    with pytest.raises(ConfigError, match="PGSYNC_DOSSIER_SYNC_AT_STARTUP.*true or false"):
        config.load(path, environ={"PGSYNC_DOSSIER_SYNC_AT_STARTUP": "maybe"})


def test_config_path_resolution(tmp_path: Path) -> None:
    assert config.resolve_path("x.yaml", {}) == Path("x.yaml")
    assert config.resolve_path(None, {"PGSYNC_DOSSIER_CONFIG": "/e.yaml"}) == Path("/e.yaml")
    assert config.resolve_path(None, {}) == Path("/etc/pgsync-dossier/config.yaml")


def test_init_config_then_check(tmp_path: Path) -> None:
    path = tmp_path / "leader.yaml"
    runner = CliRunner()
    result = runner.invoke(cli, ["init-config", "--role", "leader", str(path)])
    assert result.exit_code == 0, result.output
    assert path.stat().st_mode & 0o777 == 0o600
    token = config.load(path, environ={}).sync_token.reveal()
    checked = runner.invoke(cli, ["--config", str(path), "config", "check", "--json"])
    assert checked.exit_code == 0 and token not in checked.output
    assert '"role": "leader"' in checked.output
    again = runner.invoke(cli, ["init-config", "--role", "leader", str(path)])
    assert again.exit_code == 3 and "--force" in again.stderr
    forced = runner.invoke(cli, ["init-config", "--role", "leader", "--force", str(path)])
    assert forced.exit_code == 0
    assert config.load(path, environ={}).sync_token.reveal() != token
    sub = tmp_path / "sub.yaml"
    copied = runner.invoke(
        cli, ["init-config", "--role", "subscriber", "--sync-token-from", str(path), str(sub)]
    )
    assert copied.exit_code == 0
    assert config.load(sub, environ={}).sync_token == config.load(path, environ={}).sync_token


def test_errors_map_to_exit_codes_without_traceback(tmp_path: Path) -> None:
    runner = CliRunner()
    path = write(tmp_path, GOOD + "colour: red\n")
    result = runner.invoke(cli, ["--config", str(path), "config", "check"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "unknown key 'colour'" in result.stderr
    assert "Traceback" not in result.output
    (tmp_path / "exists.yaml").write_text("x")
    result = runner.invoke(cli, ["init-config", "--role", "leader", str(tmp_path / "exists.yaml")])
    assert result.exit_code == 3 and "--force" in result.stderr
    assert runner.invoke(cli, ["no-such-command"]).exit_code == 2
    missing = runner.invoke(cli, ["--config", str(tmp_path / "absent.yaml"), "config", "check"])
    assert missing.exit_code == 2 and "init-config" in missing.stderr


@pytest.mark.parametrize(
    ("given", "size"), [("10GB", 10 * 1024**3), ("512 mb", 512 * 1024**2), ("4096", 4096)]
)
def test_wal_retention_budget_is_a_size(tmp_path: Path, given: str, size: int) -> None:
    path = write(tmp_path, GOOD + f"wal_retention_budget: {given}\n")
    assert config.load(path, environ={}).wal_retention_budget == size


@pytest.mark.parametrize("given", ["lots", "-1GB", "0", "true", "1.5GB"])
def test_a_bad_wal_retention_budget_names_the_key(tmp_path: Path, given: str) -> None:
    path = write(tmp_path, GOOD + f"wal_retention_budget: {given}\n")
    with pytest.raises(ConfigError, match="wal_retention_budget: must be a positive size like 10GB"):
        config.load(path, environ={})


def test_replication_url_is_a_leader_setting_without_a_password(tmp_path: Path) -> None:
    leader = GOOD.replace("role: subscriber", "role: leader")
    loaded = config.load(
        write(tmp_path, leader + 'replication_url: "postgresql://db.example.org/dossiers"\n'), environ={}
    )
    assert loaded.replication_url == "postgresql://db.example.org/dossiers"
    with pytest.raises(ConfigError, match="replication_url: holds a password"):
        config.load(
            write(tmp_path, leader + 'replication_url: "postgresql://u:pw@db/dossiers"\n'), environ={}
        )
    with pytest.raises(ConfigError, match="replication_url: is a Leader setting"):
        config.load(write(tmp_path, GOOD + 'replication_url: "postgresql://db/dossiers"\n'), environ={})


def test_verify_schedule_defaults_to_daily_and_none_turns_it_off(tmp_path: Path) -> None:
    loaded = config.load(write(tmp_path, GOOD), environ={})
    assert (
        loaded.verify_schedule is not None and loaded.verify_schedule.text == config.DEFAULT_VERIFY_SCHEDULE
    )
    assert loaded.repair_on_divergence is True
    off = config.load(
        write(tmp_path, GOOD + "verify_schedule: none\nrepair_on_divergence: false\n"), environ={}
    )
    assert off.verify_schedule is None and off.repair_on_divergence is False
    hourly = config.load(write(tmp_path, GOOD + 'verify_schedule: "FREQ=HOURLY"\n'), environ={})
    assert hourly.verify_schedule is not None and hourly.effective()["verify_schedule"] == "FREQ=HOURLY"
    with pytest.raises(
        ConfigError, match="verify_schedule: invalid RRULE: .*'none' to verify only when asked"
    ):
        config.load(write(tmp_path, GOOD + 'verify_schedule: "FREQ=SOMETIMES"\n'), environ={})
    leader = GOOD.replace("role: subscriber", "role: leader")
    assert config.load(write(tmp_path, leader), environ={}).verify_schedule is None
    with pytest.raises(ConfigError, match="verify_schedule: is a Subscriber setting"):
        config.load(write(tmp_path, leader + 'verify_schedule: "FREQ=DAILY"\n'), environ={})
