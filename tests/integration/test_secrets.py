"""The derived replication password and the sync token never appear in any SQL text.

A monitoring role (a pg_read_all_stats member, as monitoring tools run) polls
pg_stat_activity on both servers while attach, repair and a token rotation run; both servers
log every statement (log_statement = 'all'); an unexpected error writes a crash report. None
of them may hold the token or the password derived from it, old or new.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgsync_dossier.token import Secret, enrollment_password
from tests.harness import TOKEN, Site, add_dossiers, attach, make_list, own_login_passwords, write_config

NEW_TOKEN = "Rotated-Token-" + "fedcba9876543210" * 3
MONITOR, MONITOR_PASSWORD = "watching_monitor", "monitor-password"


class ActivityWatch:
    """Every query text seen in pg_stat_activity, polled as fast as the server answers."""

    def __init__(self, site: Site) -> None:
        self.texts: set[str] = set()
        self.stop = threading.Event()
        url = site.node.cluster.tcp_url("postgres", MONITOR, MONITOR_PASSWORD)
        self.thread = threading.Thread(target=self._poll, args=(url,), daemon=True)

    def _poll(self, url: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not self.stop.is_set():
                for (query,) in conn.execute("SELECT query FROM pg_stat_activity WHERE query <> ''"):
                    self.texts.add(query)

    def __enter__(self) -> ActivityWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def logging_everything(sites: dict[str, Site]) -> Iterator[None]:
    for site in (sites["leader"], sites["subscriber_a"]):
        with psycopg.connect(site.node.cluster.conninfo(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET log_statement = 'all'")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pg_read_all_stats").format(
                    sql.Identifier(MONITOR), sql.Literal(MONITOR_PASSWORD)
                )
            )
    yield
    for site in (sites["leader"], sites["subscriber_a"]):
        with psycopg.connect(site.node.cluster.conninfo(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET log_statement")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(MONITOR)))


def _secrets(sub: Site) -> list[str]:
    return [
        TOKEN,
        NEW_TOKEN,
        enrollment_password(Secret(TOKEN)).reveal(),
        enrollment_password(Secret(NEW_TOKEN)).reveal(),
        *own_login_passwords(sub),
    ]


def test_no_sql_text_holds_the_password(
    sites: dict[str, Site], logging_everything: None, tmp_path: Path
) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "L"), make_list(sub.node, "T")
    add_dossiers(leader.node, remote, 50)
    outputs = []
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    with ActivityWatch(leader) as on_leader, ActivityWatch(sub) as on_subscriber:
        outputs.append(attach(sub, leader, remote, local))
        outputs.append(sub.run("repair", str(local), "--confirm", "--json").stdout)
        # Token rotation: the Leader, then the Subscriber (its own login stays; only enrolling changes).
        for site, role in ((leader, "leader"), (sub, "subscriber")):
            rotated = Site(
                site.node, write_config(tmp_path / f"{role}.yaml", site.node, role, sync_token=NEW_TOKEN)
            )
            outputs.append(rotated.ok("setup", "--json").stdout)
            if role == "subscriber":
                sub = rotated
        add_dossiers(leader.node, remote, 1, prefix="after-rotation-")
        outputs.append(sub.ok("sync", str(local)).stdout)
        # An unexpected error in the middle of an attach writes a crash report.
        second_remote, second_local = make_list(leader.node, "L2"), make_list(sub.node, "T2")
        crashed = sub.run(
            "attach",
            "--remote-list",
            str(second_remote),
            "--remote-url",
            leader.leader_url,
            "--local-list",
            str(second_local),
            fault="attach.link_recorded:raise",
            env={"XDG_STATE_HOME": str(crash_dir)},
        )
        assert crashed.exit_code == 1 and "internal error" in crashed.stderr
    reports = list(crash_dir.iterdir())
    assert reports and "fault injected at attach.link_recorded" in reports[0].read_text()
    assert len(on_leader.texts) > 20 and len(on_subscriber.texts) > 20  # the monitor saw the work
    logs = [site.node.cluster.logfile.read_text(errors="replace") for site in (leader, sub)]
    assert "api_set_group_lists" in logs[0] and "pg_subscription" in logs[1]  # logging is on
    haystacks = {
        "leader's pg_stat_activity": "\n".join(on_leader.texts),
        "subscriber's pg_stat_activity": "\n".join(on_subscriber.texts),
        "leader's log": logs[0],
        "subscriber's log": logs[1],
        "command output": "\n".join(str(o) for o in outputs) + crashed.stdout + crashed.stderr,
        "crash report": reports[0].read_text(),
        "pg_subscription": str(sub.node.execute("SELECT subconninfo FROM pg_subscription")),
    }
    for where, text in haystacks.items():
        for secret in _secrets(sub):
            assert secret not in text, f"a secret appears in the {where}"
    # The password file is the server's alone.
    (row,) = sub.node.execute("SELECT subconninfo FROM pg_subscription")
    passfile = row["subconninfo"].split("passfile=")[1].split()[0].strip("'")
    assert os.stat(passfile).st_mode & 0o777 == 0o600
