"""What setup, attach, detach and repair report: one typed result each, which the CLI renders as
text or JSON and the HTTP API answers with. Pure: no database code.

`to_json()` gives the `--json` document, whose keys are documented and stable (docs/cli.md):
a field added here is a key added there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: A JSON object as `--json` prints it.
JsonObject = dict[str, object]


@dataclass(frozen=True)
class LinkResult:
    """A link after attach or repair. After a copy or a repair, `dossiers` and `faces` are what
    it wrote (the list at its snapshot): counting the list again would read it all from disk."""

    local_list: int
    remote_list: int
    leader: str
    group: str
    state: str
    created: bool
    #: whether the first sync (the copy) ran and reached its barrier in this call
    synced: bool
    #: whether the list's copy is still owed (the next attach, sync or tick makes it)
    first_sync_pending: bool
    dossiers: int
    faces: int

    def to_json(self) -> JsonObject:
        return asdict(self)


@dataclass(frozen=True)
class AttachResult(LinkResult):
    """The link attach made, resumed or found."""


@dataclass(frozen=True)
class Differences:
    """The rows a repair found different, and so fixed."""

    missing: int
    extra: int
    changed: int


@dataclass(frozen=True)
class RepairResult(LinkResult):
    #: what the repair in place found; None when the list's copy was owed and it was copied
    differences: Differences | None = None

    def to_json(self) -> JsonObject:
        document = asdict(self)
        del document["differences"]
        return document | (asdict(self.differences) if self.differences is not None else {})


@dataclass(frozen=True)
class DetachResult:
    local_list: int
    remote_list: int
    leader_reachable: bool
    #: whether the group's slot is gone from the Leader (dropped, or the list left a group that goes on)
    slot_dropped: bool
    purged_dossiers: int
    #: dossiers the Leader moved into another list of the group, kept until their move arrives
    kept_in_transit: int
    #: whether the group's stream caught up with the Leader before the list was unmapped; when
    #: not (the Leader down, or the barrier failed: the log says why), the kept rows may lag
    caught_up: bool

    def to_json(self) -> JsonObject:
        return asdict(self)


@dataclass(frozen=True)
class UpgradePending:
    """A version-1 list that setup left for the next sync or tick, and why."""

    local_list: int
    error: str | None


@dataclass(frozen=True)
class SetupResult:
    role: str
    node_name: str
    face_model: str
    created: bool
    token_rotated: bool
    face_model_changed: bool
    #: the version-1 links copied into their groups in place
    upgraded_lists: tuple[int, ...] = ()
    upgrade_pending: tuple[UpgradePending, ...] = ()
    #: whether the database had moved (a restore, a clone) and got an identity of its own
    new_identity: bool = False
    warnings: tuple[str, ...] = ()
    #: on a Leader or relay: what its streams spend decoding its WAL (decode_load)
    decoding: str | None = None

    def to_json(self) -> JsonObject:
        return asdict(self)
