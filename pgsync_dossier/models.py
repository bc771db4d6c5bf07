"""The schema as SQLAlchemy tables: what the Alembic history must produce (checked for drift).

Migrations are written by hand and frozen; this module describes the head revision so a test
can compare a freshly migrated catalog against it. Why each constraint exists is in
docs/architecture.md ("Schema") and docs/design-notes.md.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, TIMESTAMP, UUID

# PostgreSQL's own default names, so constraints read the same in psql and in migrations.
NAMING_CONVENTION = {
    "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}
CATALOG_SCHEMA = "pgsync"

#: Row size bounds that keep every dossier and face row inline (no TOAST): a row moved into a
#: published list is sent as an INSERT without its unchanged out-of-line values (docs/design-notes.md).
MAX_NAME_BYTES = 1000
MAX_COMMENT_BYTES = 4000
MAX_EMBEDDING_BYTES = 7168
MAX_MODEL_BYTES = 200


#: The content hashes' expressions (migration 0005 has them verbatim).
def _stamp(column: str, seed: int) -> str:
    """A timestamp's hash, the same on every version: that of its microseconds since the epoch
    (PostgreSQL 15 has no timestamptz hash function; this expression is immutable on all)."""
    epoch = "'1970-01-01 00:00:00+00'::timestamptz"
    return f"hashint8extended((extract(epoch from ({column} - {epoch})) * 1000000)::bigint, {seed})"


DOSSIER_CONTENT_HASH = (
    "uuid_hash_extended(id, 1) # hashtextextended(name, 2) # hashtextextended(comment, 3)"
    f" # hashint4extended(active::integer, 4) # {_stamp('created_at', 5)} # {_stamp('modified_at', 6)}"
)
FACE_CONTENT_HASH = (
    "uuid_hash_extended(id, 1) # uuid_hash_extended(dossier_id, 2)"
    " # hashtextextended(encode(embedding, 'hex'), 3) # hashtextextended(model, 4)"
    f" # {_stamp('created_at', 5)}"
)

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _timestamp(name: str, nullable: bool = False, default: bool = True) -> Column[object]:
    return Column(
        name,
        TIMESTAMP(timezone=True),
        nullable=nullable,
        server_default=text("now()") if default else None,
    )


dossier_list = Table(
    "dossier_list",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("comment", Text, nullable=False, server_default=text("''")),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    _timestamp("created_at"),
    _timestamp("modified_at"),
)

dossier = Table(
    "dossier",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column("dossier_list_id", Integer, ForeignKey("dossier_list.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("comment", Text, nullable=False, server_default=text("''")),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    _timestamp("created_at"),
    _timestamp("modified_at"),
    Column("row_version", BigInteger, nullable=False, server_default=text("0")),
    # Each server's own hash of the row's content (migration 0005): with row_version, what verify
    # compares (sql/compare.sql).
    Column("content_hash", BigInteger, Computed(DOSSIER_CONTENT_HASH, persisted=True)),
    # The replica identity on the Leader and the target of dossier_face's composite FK.
    UniqueConstraint("id", "dossier_list_id"),
    CheckConstraint(f"octet_length(name) BETWEEN 1 AND {MAX_NAME_BYTES}", name="name_size"),
    CheckConstraint(f"octet_length(comment) <= {MAX_COMMENT_BYTES}", name="comment_size"),
    Index(None, "dossier_list_id", "name"),
    Index(None, "dossier_list_id", "id", postgresql_include=["content_hash", "row_version"]),
    Index(None, "row_version", postgresql_using="brin"),
)

dossier_face = Table(
    "dossier_face",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
    Column("dossier_id", UUID(as_uuid=True), nullable=False),
    Column("dossier_list_id", Integer, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    Column("model", Text, nullable=False),
    _timestamp("created_at"),
    Column("row_version", BigInteger, nullable=False, server_default=text("0")),
    Column("content_hash", BigInteger, Computed(FACE_CONTENT_HASH, persisted=True)),
    UniqueConstraint("id", "dossier_list_id"),
    # Moving a dossier between lists moves its faces in the same transaction (docs/design-notes.md).
    ForeignKeyConstraint(
        ["dossier_id", "dossier_list_id"],
        ["dossier.id", "dossier.dossier_list_id"],
        onupdate="CASCADE",
        ondelete="CASCADE",
    ),
    CheckConstraint(f"octet_length(embedding) BETWEEN 1 AND {MAX_EMBEDDING_BYTES}", name="embedding_size"),
    CheckConstraint(f"octet_length(model) BETWEEN 1 AND {MAX_MODEL_BYTES}", name="model_size"),
    Index(None, "dossier_list_id", "id", postgresql_include=["content_hash", "row_version"]),
    Index(None, "dossier_id", "dossier_list_id"),
    Index(None, "row_version", postgresql_using="brin"),
)

# -- the pgsync catalog ---------------------------------------------------------------------
#: A random name for this node, drawn once by the database (used in its group names).
NODE_TAG_DEFAULT = "substr(replace(gen_random_uuid()::text, '-', ''), 1, 12)"

node = Table(
    "node",
    metadata,
    Column("id", Boolean, primary_key=True, server_default=text("true")),
    Column("role", Text, nullable=False),
    Column("node_name", Text, nullable=False),
    Column("face_model", Text, nullable=False),
    Column("token_verifier", Text, nullable=False),
    Column("sync_schedule", Text),
    Column("sync_at_startup", Boolean, nullable=False),
    Column("sync_at_creation", Boolean, nullable=False),
    _timestamp("created_at"),
    _timestamp("updated_at"),
    Column("node_tag", Text, nullable=False, server_default=text(NODE_TAG_DEFAULT)),
    Column("placement", Text),
    Column("enrollment", Text, nullable=False, server_default=text("'auto'")),
    #: A Leader's identity for its Subscribers, kept across pg_upgrade (a new system identifier).
    Column("leader_id", Text),
    #: Where a node lived when `prepare-upgrade` ran: its next placement is accepted as its own.
    Column("upgrading_from", Text),
    #: The pgsync-dossier version of the last `setup` (a Leader tells its Subscribers).
    Column("software_version", Text),
    #: The WAL timeline this database was on when last opened: a later one means a promotion.
    Column("timeline", Integer),
    CheckConstraint("id", name="singleton"),
    CheckConstraint("role IN ('leader', 'subscriber', 'relay')", name="role"),
    CheckConstraint("enrollment IN ('auto', 'manual')", name="enrollment"),
    schema=CATALOG_SCHEMA,
)

#: Named tokens for the HTTP API and the web page (never the sync token), as SHA-256 hashes.
api_token = Table(
    "api_token",
    metadata,
    Column("name", Text, primary_key=True),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("read_only", Boolean, nullable=False, server_default=text("false")),
    _timestamp("created_at"),
    _timestamp("last_used_at", nullable=True, default=False),
    CheckConstraint("name ~ '^[A-Za-z0-9_.-]{1,64}$'", name="name"),
    schema=CATALOG_SCHEMA,
)

# Keyed by group name on both sides: the primary key is also the row filter's column, so the
# Leader's replica identity covers it and the Subscriber needs no remapping.
heartbeat = Table(
    "heartbeat",
    metadata,
    Column("group_name", Text, primary_key=True),
    Column("seq", BigInteger, nullable=False, server_default=text("0")),
    Column("beat_at", TIMESTAMP(timezone=True), nullable=False, server_default=text("now()")),
    schema=CATALOG_SCHEMA,
)

# -- the Leader's registry ---------------------------------------------------------------------
#: One row per Subscriber group: its publication (and slot) name and the lists it filters on.
group_registration = Table(
    "group_registration",
    metadata,
    Column("name", Text, primary_key=True),
    Column("subscriber_node", Text, nullable=False),
    Column("lists", ARRAY(Integer), nullable=False),
    _timestamp("registered_at"),
    _timestamp("updated_at"),
    schema=CATALOG_SCHEMA,
)

#: One login per Subscriber (role pgsync_s_<node tag>_<Leader>), made by pgsync.api_enroll.
subscriber_login = Table(
    "subscriber_login",
    metadata,
    Column("login", Text, primary_key=True),
    Column("node_tag", Text, nullable=False, unique=True),
    Column("node_name", Text, nullable=False, unique=True),
    Column("state", Text, nullable=False),
    _timestamp("requested_at"),
    _timestamp("approved_at", nullable=True, default=False),
    _timestamp("revoked_at", nullable=True, default=False),
    CheckConstraint("state IN ('pending', 'active', 'approved', 'revoked')", name="state"),
    schema=CATALOG_SCHEMA,
)

# Version 1's registry (one publication per list), read only to retire version-1 slots.
publication = Table(
    "publication",
    metadata,
    Column("list_id", Integer, ForeignKey("dossier_list.id"), primary_key=True),
    Column("publication_name", Text, nullable=False, unique=True),
    _timestamp("created_at"),
    schema=CATALOG_SCHEMA,
)

subscriber_link = Table(
    "subscriber_link",
    metadata,
    Column("slot_name", Text, primary_key=True),
    Column("list_id", Integer, ForeignKey("pgsync.publication.list_id"), nullable=False),
    Column("subscriber_node", Text, nullable=False),
    Column("subscriber_list_id", Integer, nullable=False),
    _timestamp("registered_at"),
    UniqueConstraint("subscriber_node", "subscriber_list_id"),
    schema=CATALOG_SCHEMA,
)

# -- the Subscriber's catalog ------------------------------------------------------------------
#: This Subscriber's own login on each Leader (its password: a file in the data directory).
leader_login = Table(
    "leader_login",
    metadata,
    Column("leader_id", Text, primary_key=True),
    Column("login", Text, nullable=False),
    Column("leader_url", Text, nullable=False),  # the last URL it answered at: no lookup needed
    Column("token_check", Text),  # token.verifier_check of the Leader's verifier: checked once
    _timestamp("enrolled_at"),
    schema=CATALOG_SCHEMA,
)

#: One replication stream: (Leader, this Subscriber, schedule override). Its name is the
#: subscription's, the slot's and the Leader publication's.
sync_group = Table(
    "sync_group",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("leader_id", Text, nullable=False),
    Column("leader_url", Text, nullable=False),
    Column("leader_node_name", Text),
    Column("schedule", Text),
    Column("leader_schedule", Text),
    Column("leader_face_model", Text),  # as the upstream last said (0012): a relay passes it on
    Column("leader_available", Boolean, nullable=False, server_default=text("true")),
    Column("leader_unavailable_since", TIMESTAMP(timezone=True)),
    Column("copying_list_id", Integer),
    Column("paused_until", TIMESTAMP(timezone=True)),
    Column("last_error", Text),
    Column("stopped_at_lsn", BigInteger),  # the slot position when the stream last stopped
    # where tick moves the stream when its upstream stays unreachable (fallback.py)
    Column("fallback_urls", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    _timestamp("created_at"),
    _timestamp("updated_at"),
    UniqueConstraint("leader_id", "schedule", postgresql_nulls_not_distinct=True),
    CheckConstraint("name ~ '^pgsync_[a-z0-9_]+$'", name="name"),
    schema=CATALOG_SCHEMA,
)

LINK_STATES = ("attaching", "copying", "ready", "paused", "detaching", "error", "repairing")

link = Table(
    "link",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("local_list_id", Integer, ForeignKey("dossier_list.id"), nullable=False, unique=True),
    Column("remote_list_id", Integer, nullable=False),
    Column("leader_id", Text, nullable=False),
    Column("group_id", Integer, ForeignKey("pgsync.sync_group.id"), nullable=False, index=True),
    Column("state", Text, nullable=False, server_default=text("'attaching'")),
    Column("legacy_subscription", Text),
    Column("copy_expected", BigInteger),
    Column("last_error", Text),
    Column("settle_since", BigInteger),  # the Leader's WAL position a copy settles from (0008)
    Column("origin_id", Text),  # the Leader the list comes from, through relays (0012; NULL: leader_id)
    # a paused list owes an in-place repair when it resumes (0013): see catalog.set_group_links_repairing
    Column("repair_owed", Boolean, nullable=False, server_default=text("false")),
    _timestamp("created_at"),
    _timestamp("updated_at"),
    CheckConstraint("state IN (" + ", ".join(f"'{state}'" for state in LINK_STATES) + ")", name="state"),
    UniqueConstraint("leader_id", "remote_list_id"),
    schema=CATALOG_SCHEMA,
)

SYNC_REASONS = ("schedule", "startup", "creation", "manual", "repair", "heal", "verify")

sync_run = Table(
    "sync_run",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("group_id", Integer, ForeignKey("pgsync.sync_group.id", ondelete="CASCADE"), nullable=False),
    Column("reason", Text, nullable=False),
    _timestamp("started_at"),
    _timestamp("finished_at", nullable=True, default=False),
    Column("window_at", TIMESTAMP(timezone=True)),
    Column("barrier_seq", BigInteger),
    Column("ok", Boolean),
    Column("error", Text),
    Column("note", Text),  # what a heal found and did
    CheckConstraint("reason IN (" + ", ".join(f"'{reason}'" for reason in SYNC_REASONS) + ")", name="reason"),
    Index(None, "group_id", "started_at"),
    schema=CATALOG_SCHEMA,
)

#: How far behind a group was when the scheduler probed it (or 0 after a sync): the lag
#: history the web page charts, kept as long as the sync history.
lag_sample = Table(
    "lag_sample",
    metadata,
    Column("group_id", Integer, ForeignKey("pgsync.sync_group.id", ondelete="CASCADE"), nullable=False),
    _timestamp("sampled_at"),
    Column("lag_bytes", BigInteger),
    Column("lag_seconds", Double),
    Index(None, "group_id", "sampled_at"),
    schema=CATALOG_SCHEMA,
)

#: Why a replica was verified: its verify_schedule, a `verify` asked for, or after a repair.
VERIFICATION_REASONS = ("schedule", "manual", "repair")

#: Every verification of a replica, kept as long as the sync history (status shows the latest).
verification = Table(
    "verification",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("local_list_id", Integer, nullable=False),
    Column("remote_list_id", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("started_at", TIMESTAMP(timezone=True), nullable=False),
    _timestamp("finished_at"),
    Column("leader_lsn", BigInteger),
    Column("equal", Boolean),  # None: it could not compare (see error)
    *(
        Column(f"{table}_{kind}", Integer)
        for table in ("dossiers", "faces")
        for kind in ("missing", "extra", "changed")
    ),
    Column("error", Text),
    CheckConstraint(
        "reason IN (" + ", ".join(f"'{reason}'" for reason in VERIFICATION_REASONS) + ")", name="reason"
    ),
    Index(None, "local_list_id", "finished_at"),
    schema=CATALOG_SCHEMA,
)

orphan_slot = Table(
    "orphan_slot",
    metadata,
    Column("slot_name", Text, primary_key=True),
    Column("leader_url", Text, nullable=False),
    Column("leader_id", Text, nullable=False),
    _timestamp("detached_at"),
    Column("last_error", Text),
    schema=CATALOG_SCHEMA,
)
