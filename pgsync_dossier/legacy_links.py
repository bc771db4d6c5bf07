"""The upgrade from version 1, where each link had a subscription and a slot of its own: `setup`
copies every such link into its group in place, then drops its own subscription and slot
(docs/design-notes.md, "Version 2").

A Leader that cannot do it now (down, not yet set up with this version) leaves its lists for
the next sync or tick, which finishes the job the same way (groups.copy_pending).
"""

from __future__ import annotations

from pgsync_dossier import catalog, pg, sync
from pgsync_dossier.config import Config
from pgsync_dossier.deadline import Deadline
from pgsync_dossier.results import UpgradePending
from pgsync_dossier.session import subscriber_session

#: How long setup spends copying one group of version-1 links into place.
UPGRADE_TIMEOUT_S = 3600.0


def legacy_lists(conn: pg.Connection) -> list[int]:
    """The local lists of this Subscriber still replicated by a version-1 subscription."""
    return [link.local_list_id for link in catalog.links(conn) if link.legacy_subscription]


def upgrade(config: Config) -> tuple[list[int], list[UpgradePending]]:
    """Copy each version-1 link into its group in place; returns the lists upgraded and those
    left for later."""
    upgraded: list[int] = []
    pending: list[UpgradePending] = []
    with subscriber_session(config, "setup") as s:
        legacy_groups = {link.group_id for link in catalog.links(s.conn) if link.legacy_subscription}
        for group in catalog.groups(s.conn):
            if group.id not in legacy_groups:
                continue
            outcome = sync.sync_group(s, group, "manual", Deadline(UPGRADE_TIMEOUT_S))
            if outcome.status == "synced":
                upgraded.extend(outcome.lists)
            else:
                pending.extend(UpgradePending(local, outcome.error) for local in outcome.lists)
    return upgraded, pending
