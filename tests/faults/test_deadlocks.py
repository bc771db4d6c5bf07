"""A copy or a repair that PostgreSQL ends as a deadlock's victim runs again in the same command.

Another group's stream can write the rows a copy or a repair writes (a dossier moved between
two groups' lists), in an order of its own. The deadlock is built here by hand, so that it
happens every time: a transaction on the Subscriber holds a row the command is about to
write, and once the command waits on it, asks for a lock the command holds. The command
waited first, so its own deadlock check finds the cycle and PostgreSQL ends its transaction;
the blocking transaction then rolls back, as a stream's would commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pgsync_dossier import subscriber
from tests.harness import (
    CliResult,
    Site,
    add_dossiers,
    assert_converged,
    attach,
    attach_args,
    list_rows,
    make_list,
    wait_until,
)

#: Rows outside the replica the test attached: none (the local list of the clash stays empty).
NOTHING_ELSE = {"dossier": 0, "dossier_face": 0}


def _waiting_on_a_lock(sub: Site, local: int) -> bool:
    rows = sub.node.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
        [subscriber.copy_application_name(local)],
    )
    return bool(rows[0]["n"])


def _in_a_deadlock(
    sub: Site, local: int, hold: Callable[[Any], None], command: Callable[[], CliResult]
) -> CliResult:
    """Run `command` while a transaction that `hold` began blocks its writer of list `local`,
    then close the cycle from that transaction. Returns the command's result."""
    outcome: dict[str, CliResult] = {}
    with sub.node.connect() as blocker:
        blocker.execute("BEGIN")
        hold(blocker)
        running = threading.Thread(target=lambda: outcome.update(result=command()))
        running.start()
        wait_until(lambda: _waiting_on_a_lock(sub, local), "the command to wait on the held row")
        # Granted only once the command's transaction is gone: PostgreSQL ended it.
        blocker.execute("LOCK TABLE dossier IN SHARE MODE")
        blocker.execute("ROLLBACK")
    running.join(120)
    return outcome["result"]


def test_a_copy_chosen_as_a_deadlocks_victim_copies_again(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Wanted replica")
    elsewhere = make_list(sub.node, "A local list")
    clash, *_ = add_dossiers(leader.node, remote, 5)

    def hold(blocker: Any) -> None:
        # An uncommitted row with the id of one the copy writes: the copy waits to know its fate.
        blocker.execute(
            "INSERT INTO dossier (id, dossier_list_id, name) VALUES (%s, %s, 'clash')", [clash, elsewhere]
        )

    result = _in_a_deadlock(sub, local, hold, lambda: sub.run(*attach_args(leader.leader_url, remote, local)))
    assert result.exit_code == 0, result.stderr
    assert_converged(leader, sub, [(remote, local)], outside=NOTHING_ELSE)
    assert not list_rows(sub.node, elsewhere)[0]


def test_a_copy_whose_writers_block_each_other_through_a_stream_copies_again(sites: dict[str, Site]) -> None:
    """The direct copy writes each table in its own transaction and commits both at the end,
    so a writer that is done waits on the client, unseen by PostgreSQL's deadlock detector.
    A transaction (another group's stream, here a DBA's) that holds a row the dossiers' writer
    needs, and then waits on a face the faces' writer wrote, stalls the copy and itself for
    the whole deadline unless the copy notices and gives way."""
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Wanted replica")
    elsewhere = make_list(sub.node, "A local list")
    clash, *_ = add_dossiers(leader.node, remote, 5)
    (face,) = leader.node.execute("SELECT id FROM dossier_face WHERE dossier_id = %s LIMIT 1", [clash])
    name = subscriber.copy_application_name(local)

    def session(state: str, wait_event_type: str) -> bool:
        rows = sub.node.execute(
            "SELECT 1 FROM pg_stat_activity "
            "WHERE application_name = %s AND state = %s AND wait_event_type = %s",
            [name, state, wait_event_type],
        )
        return bool(rows)

    outcome: dict[str, CliResult] = {}
    args = (*attach_args(leader.leader_url, remote, local), "--timeout", "60")
    with sub.node.connect() as blocker:
        blocker.execute("BEGIN")
        blocker.execute(
            "INSERT INTO dossier (id, dossier_list_id, name) VALUES (%s, %s, 'clash')", [clash, elsewhere]
        )
        running = threading.Thread(target=lambda: outcome.update(result=sub.run(*args)))
        running.start()
        wait_until(lambda: session("active", "Lock"), "the dossiers' writer to wait on the held row")
        wait_until(lambda: session("idle in transaction", "Client"), "the faces' writer to be done")
        started = time.monotonic()
        # Waits on the faces' writer, which waits for the dossiers' writer, which waits on this.
        blocker.execute(
            "INSERT INTO dossier_face (id, dossier_id, embedding, model) VALUES (%s, %s, 'x', 'm')",
            [face["id"], clash],
        )
        waited = time.monotonic() - started
        blocker.execute("ROLLBACK")
    running.join(120)
    result = outcome["result"]
    assert result.exit_code == 0, result.stderr
    assert waited < 10, f"the copy held the other transaction for {waited:.1f}s"
    assert_converged(leader, sub, [(remote, local)], outside=NOTHING_ELSE)
    assert not list_rows(sub.node, elsewhere)[0]


def test_a_repair_chosen_as_a_deadlocks_victim_repairs_again(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Wanted replica")
    damaged, *_ = add_dossiers(leader.node, remote, 5)
    attach(sub, leader, remote, local)
    with sub.node.connect() as conn, conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("UPDATE dossier SET comment = 'damaged' WHERE id = %s", [damaged])

    def hold(blocker: Any) -> None:
        # The damaged row, locked by an update that changes nothing that was committed.
        blocker.execute("SET LOCAL session_replication_role = replica")
        blocker.execute("UPDATE dossier SET comment = 'held' WHERE id = %s", [damaged])

    result = _in_a_deadlock(sub, local, hold, lambda: sub.run("repair", str(local), "--confirm", "--json"))
    assert result.exit_code == 0, result.stderr
    assert result.json()["changed"] == 1
    assert_converged(leader, sub, [(remote, local)], outside=NOTHING_ELSE)
