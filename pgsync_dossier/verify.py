"""verify: does each replica hold exactly its Leader list? Compared by digest, not by moving rows.

A replica is compared right after a sync barrier, so changes in flight are not mistaken for
divergence; a Leader edit between the barrier and the digest is retried a few times.
"""

from __future__ import annotations

from typing import Any

from pgsync_dossier import pg
from pgsync_dossier.config import Config
from pgsync_dossier.errors import PreconditionFailed
from pgsync_dossier.leader import LeaderClient
from pgsync_dossier.node import require_role
from pgsync_dossier.sync import sync_link

ATTEMPTS = 3


def local_digest(conn: pg.Connection, list_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM pgsync.list_digest(%s)", [list_id]).fetchone()
    assert row is not None
    return row


def verify(config: Config, local_list_id: int | None, timeout_s: float) -> list[dict[str, Any]]:
    results = []
    with pg.connect(config.database_url, what="this Subscriber's database") as conn:
        require_role(conn, "subscriber", "verify")
        links = conn.execute("SELECT * FROM pgsync.link ORDER BY local_list_id").fetchall()
        if local_list_id is not None:
            links = [link for link in links if link["local_list_id"] == local_list_id]
            if not links:
                raise PreconditionFailed(
                    f"list {local_list_id} is not a replica on this Subscriber", code="not_a_replica"
                )
        for link in links:
            results.append(_verify_link(conn, config, link, timeout_s))
    return results


def _verify_link(
    conn: pg.Connection, config: Config, link: dict[str, Any], timeout_s: float
) -> dict[str, Any]:
    result: dict[str, Any] = {"local_list": link["local_list_id"], "remote_list": link["remote_list_id"]}
    for _ in range(ATTEMPTS):
        outcome = sync_link(conn, config, link, "manual", timeout_s)
        if outcome.status != "synced":
            return {**result, "match": None, "error": f"could not sync first: {outcome.error}"}
        with LeaderClient(link["leader_url"], config.sync_token) as leader:
            remote = leader.list_digest(link["remote_list_id"])
        local = local_digest(conn, link["local_list_id"])
        result.update(
            {
                "dossiers": local["dossiers"],
                "faces": local["faces"],
                "leader_dossiers": remote["dossiers"],
                "leader_faces": remote["faces"],
                "match": local["digest"] == remote["digest"],
                "error": None,
            }
        )
        if result["match"]:
            break
    return result
