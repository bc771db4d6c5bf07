"""verify: does each replica hold exactly its Leader list? Compared by digest, not by moving rows.

A replica is compared right after its group's sync barrier, so changes in flight are not
mistaken for divergence; a Leader edit between the barrier and the digest is retried a few
times.
"""

from __future__ import annotations

from typing import Any

from pgsync_dossier import catalog, pg
from pgsync_dossier.config import Config
from pgsync_dossier.deadline import Deadline
from pgsync_dossier.errors import PreconditionFailed
from pgsync_dossier.session import subscriber_session
from pgsync_dossier.sync import sync_group

ATTEMPTS = 3


def local_digest(conn: pg.Connection, list_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM pgsync.list_digest(%s)", [list_id]).fetchone()
    assert row is not None
    return row


def verify(config: Config, local_list_id: int | None, timeout_s: float) -> list[dict[str, Any]]:
    deadline = Deadline(timeout_s)
    results = []
    with subscriber_session(config, "verify") as s:
        links = catalog.links(s.conn)
        if local_list_id is not None:
            links = [link for link in links if link.local_list_id == local_list_id]
            if not links:
                raise PreconditionFailed(
                    f"list {local_list_id} is not a replica on this Subscriber", code="not_a_replica"
                )
        by_id = {group.id: group for group in catalog.groups(s.conn)}
        pending = {link.local_list_id: link for link in links}
        for _attempt in range(ATTEMPTS):
            for group_id in sorted({link.group_id for link in pending.values()}):
                outcome = sync_group(s, by_id[group_id], "manual", deadline)
                for local in outcome.lists:
                    if local in pending and outcome.status != "synced":
                        link = pending.pop(local)
                        results.append(
                            {
                                "local_list": local,
                                "remote_list": link.remote_list_id,
                                "match": None,
                                "error": f"could not sync first: {outcome.error}",
                            }
                        )
            for local, link in sorted(pending.items()):
                remote = s.leaders.get(by_id[link.group_id].leader_url).list_digest(link.remote_list_id)
                mine = local_digest(s.conn, local)
                result = {
                    "local_list": local,
                    "remote_list": link.remote_list_id,
                    "dossiers": mine["dossiers"],
                    "faces": mine["faces"],
                    "leader_dossiers": remote["dossiers"],
                    "leader_faces": remote["faces"],
                    "match": mine["digest"] == remote["digest"],
                    "error": None,
                }
                if result["match"] or _attempt == ATTEMPTS - 1:
                    results.append(result)
                    del pending[local]
            if not pending:
                break
    return sorted(results, key=lambda r: r["local_list"])
