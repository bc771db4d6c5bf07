"""verify: does each replica hold exactly its Leader list? And, with --repair, make it so.

Each replica is compared right after its group's sync barrier, chunk by chunk through the
content hashes both sides keep (compare.py), so changes in flight are not mistaken for
divergence; a list that still differs is compared again after another barrier (a Leader edit
between the barrier and the comparison), and what differs after the last attempt is
reported by kind: missing, extra, changed rows.

When the blind `verify.blind` is armed (faults.py; only the soak's self-test does it), every
compared list is reported equal with no differences: the self-test plants damage and blinds
verify, and the soak, which judges by its own SQL oracle, must still fail.
"""

from __future__ import annotations

from typing import Any

from pgsync_dossier import catalog, compare, faults
from pgsync_dossier.catalog import Link, LinkState
from pgsync_dossier.config import Config
from pgsync_dossier.deadline import Deadline
from pgsync_dossier.errors import PreconditionFailed
from pgsync_dossier.session import Session, subscriber_session
from pgsync_dossier.sync import sync_group

ATTEMPTS = 3


def verify(
    config: Config, local_list_id: int | None, timeout_s: float, repair: bool = False
) -> list[dict[str, Any]]:
    deadline = Deadline(timeout_s)
    with subscriber_session(config, "verify") as s:
        links = catalog.links(s.conn)
        if local_list_id is not None:
            links = [link for link in links if link.local_list_id == local_list_id]
            if not links:
                raise PreconditionFailed(
                    f"list {local_list_id} is not a replica on this Subscriber", code="not_a_replica"
                )
        results = _compare_after_barriers(s, links, deadline)
        if repair:
            for result in results:
                if result["match"] is False:
                    _repair(
                        s,
                        next(link for link in links if link.local_list_id == result["local_list"]),
                        result,
                        deadline,
                    )
    return sorted(results, key=lambda r: r["local_list"])


def _compare_after_barriers(s: Session, links: list[Link], deadline: Deadline) -> list[dict[str, Any]]:
    by_id = {group.id: group for group in catalog.groups(s.conn)}
    pending = {link.local_list_id: link for link in links}
    results = []
    for attempt in range(ATTEMPTS):
        for group_id in sorted({link.group_id for link in pending.values()}):
            outcome = sync_group(s, by_id[group_id], "manual", deadline)
            if outcome.status == "synced":
                continue
            for local in outcome.lists:
                if local in pending:
                    link = pending.pop(local)
                    results.append(_result(link, match=None, error=f"could not sync first: {outcome.error}"))
        for local, link in sorted(pending.items()):
            leader = s.leaders.get(by_id[link.group_id].leader_url)
            found = compare.compare_list(leader, s.conn, link.remote_list_id, local)
            if found.equal or attempt == ATTEMPTS - 1 or faults.blinded(faults.VERIFY_BLIND):
                results.append(_result(link, **_as_reported(compare.describe(found))))
                del pending[local]
        if not pending:
            break
    return results


def _repair(s: Session, link: Link, result: dict[str, Any], deadline: Deadline) -> None:
    """Repair in place what verify found, then report the list as it is afterwards."""
    group = catalog.group(s.conn, link.group_id)
    assert group is not None
    catalog.set_link_state(s.conn, link.local_list_id, LinkState.REPAIRING, "verify --repair")
    outcome = sync_group(s, group, "repair", deadline)
    fixed = outcome.repairs.get(link.local_list_id)
    if outcome.status != "synced":
        result["error"] = f"the repair did not finish: {outcome.error}"
        return
    (after,) = _compare_after_barriers(s, [link], deadline)
    result.update(
        {key: after[key] for key in ("dossiers", "faces", "leader_dossiers", "leader_faces", "match")}
    )
    result["repaired"] = fixed.before if fixed is not None else None


def _as_reported(described: dict[str, Any]) -> dict[str, Any]:
    """A comparison as verify reports it: as found, or, with the blind `verify.blind` armed,
    equal to its Leader list with no differences (a lie on purpose, for a harness to catch)."""
    if not faults.blinded(faults.VERIFY_BLIND):
        return described
    return {
        **described,
        "dossiers": described.get("leader_dossiers"),
        "faces": described.get("leader_faces"),
        "match": True,
        "missing": 0,
        "extra": 0,
        "changed": 0,
    }


def _result(link: Link, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "local_list": link.local_list_id,
        "remote_list": link.remote_list_id,
        "dossiers": None,
        "faces": None,
        "leader_dossiers": None,
        "leader_faces": None,
        "match": None,
        "missing": None,
        "extra": None,
        "changed": None,
        "repaired": None,
        "error": None,
    }
    base.update(values)
    return base
