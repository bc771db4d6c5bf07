"""verify: does each replica hold exactly its Leader list? And, with --repair, make it so.

Each replica is compared right after its group's sync barrier, chunk by chunk through the
content hashes and row versions both sides keep (compare.py), so changes in flight are not
mistaken for divergence. On a list being written the two sides are still read at slightly
different moments, so the rows that differ are compared again after another barrier, and again, up to
ATTEMPTS barriers: only what differs every time is reported, by kind (missing, extra,
changed rows). A divergence differs whenever it is read; a row the stream applied between the
two reads does not differ the next time.

Every verification is recorded (pgsync.verification): `status`, the API, the web page and
`/metrics` show each list's latest. `tick` and `run` verify each group on `verify_schedule`
(scheduled), one group of this Subscriber at a time, and with `repair_on_divergence` repair a
list that differs at once and verify it again.

When the blind `verify.blind` is armed (faults.py; only the soak's self-test does it), every
compared list is reported equal with no differences: the self-test plants damage and blinds
verify, and the soak, which judges by its own SQL oracle, must still fail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from pgsync_dossier import catalog, compare, faults, groups, links, pg
from pgsync_dossier.catalog import Group, Link, LinkState, Verification
from pgsync_dossier.config import Config
from pgsync_dossier.deadline import Deadline
from pgsync_dossier.errors import PgsyncError, PreconditionFailed
from pgsync_dossier.results import Differences
from pgsync_dossier.session import Session, subscriber_session
from pgsync_dossier.sync import sync_group

Why = Literal["schedule", "manual", "repair"]
#: The tables as a verification's counts name them.
_COUNTED = {"dossier": "dossiers", "dossier_face": "faces"}
KINDS = ("missing", "extra", "changed")

#: Barriers a list is compared after at most: the first compares it all, the others what differed.
ATTEMPTS = 5


@dataclass(frozen=True)
class VerifyRow:
    """One replica as `verify --json` reports it (the keys, in this order, are documented in
    docs/cli.md). `match` is None when it could not compare (see `error`)."""

    local_list: int
    remote_list: int
    dossiers: int | None = None
    faces: int | None = None
    leader_dossiers: int | None = None
    leader_faces: int | None = None
    match: bool | None = None
    missing: int | None = None
    extra: int | None = None
    changed: int | None = None
    #: with --repair: the rows the repair found (missing, extra, changed), None when none ran
    repaired: Differences | None = None
    error: str | None = None

    @classmethod
    def of(cls, link: Link, found: compare.Comparison) -> VerifyRow:
        """What a comparison found, as verify reports it."""
        counts = found.counts()
        return cls(
            link.local_list_id,
            link.remote_list_id,
            dossiers=found.local_rows.get("dossier"),
            faces=found.local_rows.get("dossier_face"),
            leader_dossiers=found.leader_rows.get("dossier"),
            leader_faces=found.leader_rows.get("dossier_face"),
            match=found.equal,
            missing=counts.missing,
            extra=counts.extra,
            changed=counts.changed,
        )

    def as_json(self) -> dict[str, Cell]:
        return asdict(self)


#: A value of a row of `verify --json`.
Cell = int | bool | str | dict[str, int] | None


def verify_lists(
    config: Config, local_list_id: int | None, timeout_s: float, repair: bool = False
) -> list[VerifyRow]:
    """Each replica (or only `local_list_id`) compared with its Leader list after a barrier;
    with `repair`, the ones that differ repaired and compared again."""
    deadline = Deadline(timeout_s)
    with subscriber_session(config, "verify") as s:
        links = catalog.links(s.conn)
        if local_list_id is not None:
            links = [link for link in links if link.local_list_id == local_list_id]
            if not links:
                raise PreconditionFailed(
                    f"list {local_list_id} is not a replica on this Subscriber", code="not_a_replica"
                )
        results = _compare_after_barriers(s, links, deadline, "manual")
        if repair:
            results = _repair_differing(s, links, results, deadline)
    return sorted(results, key=lambda r: r.local_list)


def scheduled(s: Session, group: Group, deadline: Deadline) -> list[VerifyRow] | None:
    """The group's verification, when its `verify_schedule` says one is due and no other group
    of this Subscriber is being verified (a later tick takes it then); None when nothing ran."""
    links = [link for link in groups.links_of(s.conn, group.id) if link.state == LinkState.READY]
    if not due(s, links, datetime.now(UTC)):
        return None
    if not pg.try_advisory_lock(s.conn, "verification", 0):
        return None
    try:
        results = _compare_after_barriers(s, links, deadline, "schedule")
        if s.config.repair_on_divergence:
            results = _repair_differing(s, links, results, deadline)
        return results
    finally:
        pg.advisory_unlock(s.conn, "verification", 0)


def due(s: Session, links: list[Link], now: datetime) -> bool:
    """Whether an occurrence of `verify_schedule` passed since one of these lists was last
    verified (or, never verified, since it was attached: the copy made it equal then)."""
    schedule = s.config.verify_schedule
    if schedule is None:
        return False
    last = catalog.last_verifications(s.conn)
    return any(
        schedule.due(
            last[link.local_list_id]["finished_at"] if link.local_list_id in last else link.created_at, now
        )
        is not None
        for link in links
    )


def _compare_after_barriers(s: Session, links: list[Link], deadline: Deadline, why: Why) -> list[VerifyRow]:
    by_id = {group.id: group for group in catalog.groups(s.conn)}
    pending = {link.local_list_id: link for link in links}
    results = []
    #: What each list's last comparison found: after the first, only those rows are compared
    #: again, after another barrier (compare.recheck), until they no longer differ.
    candidates: dict[int, compare.Comparison] = {}
    started: dict[int, datetime] = {}
    for attempt in range(ATTEMPTS):
        for group_id in sorted({link.group_id for link in pending.values()}):
            outcome = sync_group(s, by_id[group_id], "verify" if why == "schedule" else "manual", deadline)
            if outcome.status == "synced":
                continue
            for local in outcome.lists:
                if local in pending:
                    link = pending.pop(local)
                    error = f"could not sync first: {outcome.error}"
                    results.append(VerifyRow(link.local_list_id, link.remote_list_id, error=error))
                    _record(s, link, why, started.get(local, datetime.now(UTC)), None, None, error)
        for local, link in sorted(pending.items()):
            leader = s.leaders.get(by_id[link.group_id].leader_url)
            position = leader.wal_position()
            started.setdefault(local, datetime.now(UTC))
            earlier = candidates.get(local)
            found = (
                compare.compare_list(leader, s.conn, link.remote_list_id, local)
                if earlier is None
                else compare.recheck(leader, s.conn, link.remote_list_id, local, earlier)
            )
            candidates[local] = found
            if found.equal or attempt == ATTEMPTS - 1 or faults.blinded(faults.VERIFY_BLIND):
                reported = _as_reported(VerifyRow.of(link, found))
                results.append(reported)
                _record(
                    s, link, why, started[local], position, found if reported.match is found.equal else None
                )
                del pending[local]
        if not pending:
            break
    return results


def _record(
    s: Session,
    link: Link,
    why: Why,
    started: datetime,
    position: int | None,
    found: compare.Comparison | None,
    error: str | None = None,
) -> None:
    """Keep what one comparison found (a blinded one: equal, nothing counted, as it reports)."""
    counts = (
        {
            (_COUNTED[table], kind): len(getattr(difference, kind))
            for table, difference in found.tables.items()
            for kind in KINDS
        }
        if found is not None
        else (
            None if error is not None else {(table, kind): 0 for table in _COUNTED.values() for kind in KINDS}
        )
    )
    equal = None if error is not None else (found.equal if found is not None else True)
    catalog.record_verification(
        s.conn,
        Verification(link.local_list_id, link.remote_list_id, why, started, position, equal, counts, error),
    )


def _repair_differing(
    s: Session, links: list[Link], results: list[VerifyRow], deadline: Deadline
) -> list[VerifyRow]:
    """The results, each list found different repaired and reported as it is afterwards."""
    by_list = {link.local_list_id: link for link in links}
    return [
        _repair(s, by_list[result.local_list], result, deadline) if result.match is False else result
        for result in results
    ]


def _repair(s: Session, link: Link, result: VerifyRow, deadline: Deadline) -> VerifyRow:
    """Repair in place what verify found, through the one locked way in (links.repair_locked),
    then report the list as it is afterwards."""
    try:
        _group, _facts, outcome = links.repair_locked(s, link, deadline, "verify --repair")
    except PgsyncError as exc:
        return replace(result, error=f"the repair did not start: {exc}")
    if outcome.status != "synced":
        return replace(result, error=f"the repair did not finish: {outcome.error}")
    fixed = outcome.repairs.get(link.local_list_id)
    (after,) = _compare_after_barriers(s, [link], deadline, "repair")
    return replace(
        result,
        dossiers=after.dossiers,
        faces=after.faces,
        leader_dossiers=after.leader_dossiers,
        leader_faces=after.leader_faces,
        match=after.match,
        repaired=fixed.before if fixed is not None else None,
    )


def _as_reported(found: VerifyRow) -> VerifyRow:
    """A comparison as verify reports it: as found, or, with the blind `verify.blind` armed,
    equal to its Leader list with no differences (a lie on purpose, for a harness to catch)."""
    if not faults.blinded(faults.VERIFY_BLIND):
        return found
    return replace(
        found,
        dossiers=found.leader_dossiers,
        faces=found.leader_faces,
        match=True,
        missing=0,
        extra=0,
        changed=0,
    )
