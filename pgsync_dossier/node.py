"""`setup`: preflight checks, then record this node and install its role's SQL.

Preflight runs before anything changes, and each failed check says which setting to change
and how, so a DBA can fix everything in one pass (exit 3, nothing changed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pgsync_dossier import (
    catalog,
    decode_load,
    leader_install,
    legacy_links,
    pg,
    placement,
    status,
    subscriber,
)
from pgsync_dossier.config import Config
from pgsync_dossier.errors import PreconditionFailed
from pgsync_dossier.results import SetupResult
from pgsync_dossier.token import make_verifier, matches_verifier

log = logging.getLogger(__name__)

MIN_SLOTS = 4
MIN_SENDERS = 4
MIN_LOGICAL_WORKERS = 2


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def preflight(conn: pg.Connection, config: Config) -> list[Check]:
    """Everything setup needs, checked without changing anything."""
    from pgsync_dossier import migrations  # Alembic: only setup pays for it

    version = pg.server_version(conn)
    current_is_head = migrations.current_revision_on(conn) == migrations.head_revision()
    checks = [
        Check(
            "server_version",
            version >= pg.MIN_SERVER_VERSION,
            f"PostgreSQL {version // 10000} found; row-filtered publications need 15 or later: upgrade",
        )
    ]
    is_super = conn.execute(pg.query("is_superuser", "node.sql")).fetchone()
    checks.append(
        Check(
            "superuser",
            bool(is_super and is_super["rolsuper"]),
            "the database_url login must be a superuser (it creates the replication login, "
            "publications or subscriptions and SECURITY DEFINER functions): "
            "connect as one, e.g. postgres",
        )
    )

    def setting_at_least(name: str, minimum: int) -> None:
        value = int(pg.setting(conn, name))
        checks.append(
            Check(
                name,
                value >= minimum,
                f"{name} is {value}, at least {minimum} is needed: run "
                f"ALTER SYSTEM SET {name} = {max(minimum, 10)}; then restart PostgreSQL",
            )
        )

    if config.publishes:
        wal_level = pg.setting(conn, "wal_level")
        checks.append(
            Check(
                "wal_level",
                wal_level == "logical",
                f"wal_level is '{wal_level}': run ALTER SYSTEM SET wal_level = logical; "
                "then restart PostgreSQL",
            )
        )
        setting_at_least("max_replication_slots", MIN_SLOTS)
        setting_at_least("max_wal_senders", MIN_SENDERS)
    if config.subscribes:
        setting_at_least("max_logical_replication_workers", MIN_LOGICAL_WORKERS)
        # Room for this node's first stream (a group); attach checks again for each new one.
        has_groups = current_is_head and catalog.has_groups(conn)
        for limit in subscriber.stream_capacity(conn, more=0 if has_groups else 1):
            checks.append(
                Check(
                    limit.setting,
                    False,
                    f"{limit.setting} is {limit.value}, at least {limit.needed} is needed for one more "
                    f"replication stream: run ALTER SYSTEM SET {limit.setting} = {max(limit.needed, 10)}; "
                    "then restart PostgreSQL",
                )
            )
    current = migrations.current_revision_on(conn)
    head = migrations.head_revision()
    checks.append(
        Check(
            "schema",
            current == head,
            f"the schema is at {current or 'base'}, not {head}: run pgsync-dossier migrate",
        )
    )
    return checks


def setup(config: Config, *, failover: bool = False) -> SetupResult:
    """Idempotent: running it again converges; a changed token or face model is applied.
    `failover`: the operator confirms that this database, promoted in another data directory,
    replaces this node rather than copies it (placement.py)."""
    with pg.connect(config.database_url, what="this node's database") as conn:
        failed = [check for check in preflight(conn, config) if not check.ok]
        if failed:
            raise PreconditionFailed(
                "setup refused, nothing was changed: " + "; ".join(c.detail for c in failed),
                code="preflight_failed",
            )
        if failover:
            _require_promotion(conn, config.role)
        with conn.transaction():
            pg.xact_advisory_lock(conn, "node", 0)
            existing = catalog.node(conn)
            if existing and existing.role == "subscriber" and config.role == "relay":
                _refuse_remapped_replicas(conn)
            elif existing and existing.role != config.role:
                raise PreconditionFailed(
                    f"this database was set up as a {existing.role}, the config says "
                    f"{config.role}: use the right config, or a fresh database for this role",
                    code="wrong_role",
                )
            token_changed = existing is None or not matches_verifier(
                config.sync_token, existing.token_verifier
            )
            verifier = (
                existing.token_verifier
                if existing is not None and not token_changed
                else make_verifier(config.sync_token)
            )
            catalog.record_node(
                conn,
                role=config.role,
                node_name=config.node_name,
                face_model=config.face_model,
                verifier=verifier,
                schedule=config.sync_schedule.text if config.sync_schedule else None,
                startup=config.sync_at_startup,
                creation=config.sync_at_creation,
            )
            if config.subscribes:
                # A relay keeps the Leader's (id, list) identity, which its publications need.
                subscriber.install(conn, by_primary_key=not config.publishes)
            if config.publishes:
                leader_install.install(conn, config.sync_token, config.enrollment)
        reidentified = _settle_identity(conn, config.role, failover)
        if config.role == "relay":  # a Subscriber's streams, made before it became a relay
            subscriber.flush_each_commit(conn, [group.name for group in catalog.groups(conn)])
        warnings = status.leader_checks(conn) if config.publishes else []
        decoding = decode_load.measure(conn).note() if config.publishes else None
        legacy = legacy_links.legacy_lists(conn) if config.subscribes else []
    upgraded, upgrade_pending = legacy_links.upgrade(config) if legacy else ([], [])
    return SetupResult(
        role=config.role,
        node_name=config.node_name,
        face_model=config.face_model,
        created=existing is None,
        token_rotated=existing is not None and token_changed,
        face_model_changed=existing is not None and existing.face_model != config.face_model,
        upgraded_lists=tuple(upgraded),
        upgrade_pending=tuple(upgrade_pending),
        new_identity=reidentified,
        warnings=tuple(warnings),
        decoding=decoding,
    )


def _refuse_remapped_replicas(conn: pg.Connection) -> None:
    """A Subscriber becomes a relay only if each of its replicas has its Leader list's id: a
    relay keeps the Leader's replica identity (id, list), under which the stream would find
    no row of a list stored under another id, and lose its updates without an error
    (docs/design-notes.md, "Relays")."""
    remapped = [link for link in catalog.links(conn) if link.local_list_id != link.remote_list_id]
    if remapped:
        shown = ", ".join(f"{link.local_list_id} (Leader list {link.remote_list_id})" for link in remapped)
        raise PreconditionFailed(
            f"setup refused, nothing was changed: a relay keeps its Leader's list ids, and these "
            f"replicas have other ids: {shown}; detach them first, or keep this node a subscriber",
            code="wrong_role",
        )


def _require_promotion(conn: pg.Connection, role: str) -> None:
    existing = catalog.node(conn)
    promoted = (
        existing is not None
        and role != "leader"
        and catalog.whereabouts(conn, existing)[0] in ("promoted", "promoted_elsewhere")
    )
    if not promoted:
        raise PreconditionFailed(
            "setup --failover refused, nothing was changed: this database is no Subscriber's promoted "
            "standby (its WAL timeline is the one pgsync-dossier last saw here): run setup without it",
            code="not_promoted",
        )


def _settle_identity(conn: pg.Connection, role: str, failover: bool) -> bool:
    """Record where this node's database lives; when it moved (a restore, a clone, a copy
    made as a template), give it an identity of its own and return True.

    A copy carries its original's node tag, hence its group names, hence its slots on the
    Leaders: streaming under them would take the original's changes (or drop its idle slots
    as stale). The copy's subscriptions let go of those slots without dropping them (they are
    the original's), its groups get new names, and every list owes an in-place repair, which
    the next sync or tick performs through new slots of its own.
    """
    where = catalog.placement(conn)
    node = catalog.node(conn)
    assert node is not None
    moved, timeline = catalog.whereabouts(conn, node)
    if moved == "moved_by_upgrade":
        catalog.settle_upgrade(conn, where)
        catalog.set_timeline(conn, timeline)
        return False
    if role != "subscriber" and placement.leader_cloned(node.placement, where):
        catalog.new_leader_id(conn)
        log.warning("this Leader database is a clone of another on this cluster: it has a new identity")
    if role != "leader" and (moved == "promoted" or (moved == "promoted_elsewhere" and failover)):
        catalog.settle_promotion(conn, timeline)  # the timeline with it: a promotion is never lost
        log.warning("%s", catalog.PROMOTED_NOTE)
        return False
    if role == "leader" or moved == "here":
        catalog.set_placement(conn, where)
        catalog.set_timeline(conn, timeline)
        return False
    tag = catalog.new_node_tag(conn, where)
    catalog.set_timeline(conn, timeline)
    for group in catalog.groups(conn):
        if subscriber.subscription(conn, group.name) is not None:
            subscriber.drop_subscription(conn, group.name, leader_reachable=False)
            subscriber.remove_passfile(conn, group.name)
        catalog.delete_heartbeat(conn, group)
        catalog.rename_group(conn, group.id, f"pgsync_{tag}_g{group.id}")
        catalog.set_group_links_repairing(
            conn,
            group.id,
            "this database is a copy of another Subscriber's: repaired through its own stream",
            including_paused=True,
        )
    log.warning("this database moved or was copied: it has a new identity (%s)", tag)
    return True
