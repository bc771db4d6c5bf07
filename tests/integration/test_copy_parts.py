"""A copy in a group with other lists goes in parts: the group's stream applies the other
lists' changes between parts, and every list ends equal to the Leader's though both were
written, and dossiers moved between them, all along (copier.parts, groups.copy_pending)."""

from __future__ import annotations

import random
import re
import threading
import uuid
from datetime import datetime

from pgsync_dossier.copier import ROWS_PER_PART_ENV
from tests.harness import (
    Site,
    add_dossiers,
    assert_converged,
    attach,
    attach_args,
    make_list,
    oracle_verdict,
)

#: What the writer did, timed like the CLI's log: printed for the rows the oracle finds wrong.
ACTIONS: list[str] = []


def _writer(leader: Site, lists: tuple[int, int], stop: threading.Event, errors: list[BaseException]) -> None:
    """Every kind of change, in both lists, and moves between them, until told to stop."""
    rng = random.Random(7)  # noqa: S311 - a test's choice of rows, not a secret
    try:
        with leader.node.connect() as conn:
            while not stop.wait(0.01):
                target, other = rng.sample(lists, 2)
                ids = [
                    r["id"]
                    for r in conn.execute(
                        "SELECT id FROM dossier WHERE dossier_list_id = %s ORDER BY random() LIMIT 3",
                        [target],
                    )
                ]
                with conn.transaction():
                    new = uuid.uuid4()
                    conn.execute(
                        "INSERT INTO dossier (id, dossier_list_id, name) VALUES (%s, %s, 'written during')",
                        [new, target],
                    )
                    conn.execute(
                        "INSERT INTO dossier_face (dossier_id, dossier_list_id, embedding, model) "
                        "VALUES (%s, %s, '\\x0102', 'test-model')",
                        [new, target],
                    )
                    now = datetime.now().strftime("%H:%M:%S,%f")
                    ACTIONS.append(f"{now} insert {new} into {target}")
                    if len(ids) == 3:
                        ACTIONS.append(
                            f"{now} update {ids[0]}; move {ids[1]} {target}->{other}; delete {ids[2]}"
                        )
                        conn.execute(
                            "UPDATE dossier SET comment = clock_timestamp()::text WHERE id = %s", [ids[0]]
                        )
                        conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [other, ids[1]])
                        conn.execute("DELETE FROM dossier WHERE id = %s", [ids[2]])
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_a_copy_beside_a_written_list_goes_in_parts_and_loses_nothing(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    neighbour, big = make_list(leader.node, "neighbour"), make_list(leader.node, "big")
    add_dossiers(leader.node, neighbour, 20, faces_each=1)
    add_dossiers(leader.node, big, 300, faces_each=1)
    mine = {neighbour: make_list(sub.node, "neighbour replica"), big: make_list(sub.node, "big replica")}
    attach(sub, leader, neighbour, mine[neighbour])

    stop, errors = threading.Event(), []
    writer = threading.Thread(target=_writer, args=(leader, (neighbour, big), stop, errors))
    writer.start()
    try:
        result = sub.run(
            "--verbose", *attach_args(leader.leader_url, big, mine[big]), env={ROWS_PER_PART_ENV: "100"}
        )
    finally:
        stop.set()
        writer.join()
    assert not errors, errors
    assert result.exit_code == 0, result.stderr
    done = re.findall(rf"list {mine[big]}: part (\d+) of (\d+) copied", result.stderr)
    assert len(done) >= 6 and done[-1][0] == done[-1][1], result.stderr  # ~300 rows, 100 a part

    sub.ok("sync", "--all")
    verdict = oracle_verdict(leader, sub, sorted(mine.items()))
    if not verdict.equal:  # the writer's story of each row found wrong, beside the copy's log
        text = str(verdict)
        story = [a for a in ACTIONS if any(w in text for w in a.replace(";", " ").split() if len(w) == 36)]
        print("\n".join(story), result.stderr, sep="\n")
    assert_converged(leader, sub, sorted(mine.items()))  # the oracle, then verify agreeing
