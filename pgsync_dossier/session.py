"""What one Subscriber command has at hand: its config, this node's connection and catalog
row, and one connection per Leader, opened when first needed and reused for the whole command."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pgsync_dossier import catalog, pg
from pgsync_dossier.config import Config
from pgsync_dossier.enrollment import Logins
from pgsync_dossier.errors import PreconditionFailed
from pgsync_dossier.leader_client import LeaderPool

log = logging.getLogger(__name__)


@dataclass
class Session:
    config: Config
    conn: pg.Connection
    node: catalog.Node
    leaders: LeaderPool


@contextmanager
def subscriber_session(config: Config, command: str) -> Iterator[Session]:
    """Open this Subscriber's database for `command`; refused on a Leader or an unset node."""
    with pg.connect(config.database_url, what="this Subscriber's database") as conn:
        node = catalog.require_role(conn, "subscriber", command)
        moved, timeline = catalog.whereabouts(conn, node)
        if moved == "moved_by_upgrade":
            catalog.settle_upgrade(conn, catalog.placement(conn))
            log.info("this database was moved by pg_upgrade (prepare-upgrade ran before): same node")
        elif moved == "promoted":
            catalog.settle_promotion(conn, timeline)
            log.warning("%s", catalog.PROMOTED_NOTE)
        elif moved == "promoted_elsewhere":
            raise PreconditionFailed(
                "this database was promoted from a standby (or recovered to a point in time) in "
                "another data directory: if it replaces this Subscriber, run pgsync-dossier setup "
                "--failover here; if it is a copy, run pgsync-dossier setup to give it its own identity",
                code="node_promoted",
            )
        elif moved == "copied":
            # Its groups' names are another node's: streaming under them would take that
            # node's slots (or drop them as stale).
            raise PreconditionFailed(
                "this database is a copy of a Subscriber's (restored, cloned or copied elsewhere): "
                "run pgsync-dossier setup here first, to give it its own identity and streams",
                code="node_copied",
            )
        catalog.set_timeline(conn, timeline)
        with LeaderPool(Logins(conn, node, config)) as leaders:
            yield Session(config, conn, node, leaders)
