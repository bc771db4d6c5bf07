"""Moving a group to a fallback upstream when its own stays unreachable (`tick`).

A relay keeps its Leader's list ids, rows and row versions (docs/relays.md), so another relay of
the same Leader, or the Leader itself, serves the same lists under the same ids. A group whose
upstream has been unreachable for FALLBACK_AFTER_S is moved to the first of its fallback URLs
that answers, agrees with this node (token, face model, schema) and serves every list of the
group: new stream, every list repaired in place there (only what differs is copied), and the
old upstream's slot left as an orphan that is dropped when it answers again. The old URL goes
to the end of the fallbacks, so the group can move back later.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import datetime, timedelta

from pgsync_dossier import catalog, groups, subscriber
from pgsync_dossier.catalog import Group
from pgsync_dossier.conninfo import mask_conninfo
from pgsync_dossier.errors import PgsyncError, ServerUnreachable, UsageError
from pgsync_dossier.leader_client import LeaderClient, LeaderFacts
from pgsync_dossier.links import check_upstream
from pgsync_dossier.session import Session

log = logging.getLogger(__name__)

#: How long an upstream stays unreachable before its group moves: longer than a restart or a
#: failover of the upstream's own server, which the group rides out where it is.
FALLBACK_AFTER_S = 600.0
#: Overrides FALLBACK_AFTER_S (docs/configuration.md, "Tuning variables").
FALLBACK_AFTER_ENV = "PGSYNC_DOSSIER_FALLBACK_AFTER"


def fallback_after() -> timedelta:
    text = os.environ.get(FALLBACK_AFTER_ENV)
    if not text:
        return timedelta(seconds=FALLBACK_AFTER_S)
    try:
        return timedelta(seconds=max(float(text), 0.0))
    except (ValueError, OverflowError):  # 'inf' too: never moving is no fallback at all
        raise UsageError(
            f"{FALLBACK_AFTER_ENV}={text!r} is not a number of seconds: unset it, or give e.g. 600"
        ) from None


def due(group: Group, now: datetime) -> bool:
    """Whether the group should look for another upstream now."""
    since = group.leader_unavailable_since
    return bool(group.fallback_urls) and since is not None and now - since >= fallback_after()


def move_if_lost(s: Session, group: Group) -> str | None:
    """Move the group to a fallback when its upstream is still unreachable; what was done (the
    sync history's note), or None when it stays. The caller holds the group's lock, and syncs
    the group afterwards (reason 'heal'), which makes the new stream and repairs the lists."""
    try:
        groups.reach(s, group)
        return None  # it answers again: the group stays
    except ServerUnreachable:
        pass
    if subscriber.heard_within(s.conn, group.name, fallback_after().total_seconds()):
        log.warning("group %s: its upstream refuses connections but still streams: it stays", group.name)
        return None
    for url in group.fallback_urls:
        found = _usable(s, group, url)
        if found is not None:
            return _move(s, group, url, found)
    log.warning("group %s: its upstream is unreachable and no fallback can take it over", group.name)
    return None


def _usable(s: Session, group: Group, url: str) -> LeaderFacts | None:
    """The fallback's facts when it may take the group over, else None (logged)."""
    shown = mask_conninfo(url)
    try:
        upstream: LeaderClient = s.leaders.get(url)
        facts = upstream.facts()
        check_upstream(s, facts, upstream)
        links = groups.links_of(s.conn, group.id)
        lists = [link.remote_list_id for link in links]
        origins = upstream.list_origins(lists)
        available = set(upstream.lists_info(lists))
    except (ServerUnreachable, PgsyncError) as exc:
        log.warning("group %s: fallback %s cannot take it over: %s", group.name, shown, exc)
        return None
    # The same lists of the same Leader: ids alone could be another Leader's lists.
    served = origins if origins is not None else {link.remote_list_id: facts.leader_id for link in links}
    foreign = sorted(
        link.remote_list_id
        for link in links
        if link.remote_list_id not in available or served.get(link.remote_list_id) != link.origin
    )
    if foreign:
        log.warning(
            "group %s: fallback %s does not serve lists %s of this group's Leader", group.name, shown, foreign
        )
        return None
    twin = catalog.find_group(s.conn, facts.leader_id, group.schedule)
    if twin is not None and twin.id != group.id:
        log.warning(
            "group %s: fallback %s already streams to this node as group %s: detach and attach instead",
            group.name,
            shown,
            twin.name,
        )
        return None
    return facts


def _move(s: Session, group: Group, url: str, facts: LeaderFacts) -> str:
    since = group.leader_unavailable_since
    note = (
        f"{group.leader_node_name or mask_conninfo(group.leader_url)} unreachable"
        + (f" since {since.isoformat(timespec='seconds')}" if since else "")
        + f": moved to {facts.node_name}, lists repaired in place"
    )
    # One transaction: a move cut short leaves the group streaming from its old upstream, its
    # slot there (and the changes it holds) untouched.
    with s.conn.transaction():
        subscriber.drop_subscription(s.conn, group.name, leader_reachable=False)
        catalog.record_orphan(s.conn, group.name, group.leader_url, group.leader_id)
        catalog.delete_heartbeat(s.conn, group)
        catalog.move_group(
            s.conn,
            group.id,
            name=f"pgsync_{s.node.node_tag}_g{group.id}_{secrets.token_hex(3)}",
            leader_id=facts.leader_id,
            leader_url=url,
            node_name=facts.node_name,
            fallbacks=[other for other in group.fallback_urls if other != url] + [group.leader_url],
        )
        # A paused list too: the new stream starts now, without what the old slot kept for it.
        catalog.set_group_links_repairing(s.conn, group.id, note, including_paused=True)
    subscriber.remove_passfile(s.conn, group.name)  # the old upstream's password; the group has a new name
    log.warning("group %s: %s", group.name, note)
    return note
