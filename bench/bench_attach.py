"""Initial copy through `attach` against the floor: a raw binary COPY pipe, measured in one run.

    python bench/bench_attach.py [--dossiers N] [--pg-bin DIR]

Both paths move the same N dossiers and N faces (2048-byte embeddings) from the Leader's list
into an empty Subscriber list. The pipe is `COPY (SELECT ...) TO STDOUT (FORMAT binary)` into
`COPY ... FROM STDIN (FORMAT binary)`, one table after the other, with no trigger, remap or
bookkeeping: nothing can go faster. attach adds the remap trigger, the subscription machinery
and the heartbeat barrier. The result is printed as a ratio, with the raw times for context.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import yaml
from psycopg import sql

from pgsync_dossier import config as config_module
from pgsync_dossier import links, migrations, node
from pgsync_dossier.clusters import LocalCluster, find_bindir, server_version
from pgsync_dossier.token import generate_token

ADMIN, PASSWORD, DB = "bench", "bench-password", "dossiers"


def _cluster(root: Path, name: str, bindir: Path) -> LocalCluster:
    cluster = LocalCluster(root / name, bindir=bindir).init().start()
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(ADMIN), sql.Literal(PASSWORD)
            )
        )
        for db in (DB, "raw_target"):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    for db in (DB, "raw_target"):
        migrations.migrate(cluster.tcp_url(db, ADMIN, PASSWORD))
    return cluster


def _config(path: Path, cluster: LocalCluster, role: str, token: str) -> config_module.Config:
    path.write_text(
        yaml.safe_dump(
            {
                "role": role,
                "node_name": f"bench-{role}",
                "database_url": cluster.tcp_url(DB, ADMIN, PASSWORD),
                "sync_token": token,
                "face_model": "bench-model",
            }
        )
    )
    path.chmod(0o600)
    return config_module.load(path)


def _fill(leader_url: str, count: int) -> int:
    with psycopg.connect(leader_url, autocommit=True) as conn:
        list_id = conn.execute("INSERT INTO dossier_list (name) VALUES ('bench') RETURNING id").fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO dossier_list (name) VALUES ('other')")
        conn.execute(
            "INSERT INTO dossier (id, dossier_list_id, name, comment) "
            "SELECT gen_random_uuid(), %s, 'person ' || i, 'comment ' || i FROM generate_series(1, %s) i",
            [list_id, count],
        )
        conn.execute(
            "INSERT INTO dossier_face (dossier_id, dossier_list_id, embedding, model) "
            "SELECT id, dossier_list_id, decode(repeat(md5(id::text), 64), 'hex'), 'bench-model' "
            "FROM dossier",
        )
        conn.execute("VACUUM ANALYZE")
    return int(list_id)


def _raw_pipe(leader_url: str, target_url: str, list_id: int) -> float:
    start = time.perf_counter()
    with psycopg.connect(leader_url) as src, psycopg.connect(target_url) as dst:
        for table, columns in (
            ("dossier", "id, dossier_list_id, name, comment, active, created_at, modified_at"),
            ("dossier_face", "id, dossier_id, dossier_list_id, embedding, model, created_at"),
        ):
            select = sql.SQL(
                "COPY (SELECT {cols} FROM {table} WHERE dossier_list_id = {list}) TO STDOUT (FORMAT binary)"
            ).format(cols=sql.SQL(columns), table=sql.Identifier(table), list=sql.Literal(list_id))
            with (
                src.cursor().copy(select) as out,
                dst.cursor().copy(
                    sql.SQL("COPY {table} ({cols}) FROM STDIN (FORMAT binary)").format(
                        table=sql.Identifier(table), cols=sql.SQL(columns)
                    )
                ) as into,
            ):
                for block in out:
                    into.write(block)
        dst.commit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dossiers", type=int, default=50_000)
    parser.add_argument("--pg-bin")
    args = parser.parse_args()
    bindir = find_bindir(args.pg_bin)
    root = Path(tempfile.mkdtemp(prefix="pgsd-bench-"))
    root.chmod(0o755)
    clusters: list[LocalCluster] = []
    try:
        token = generate_token()
        leader, sub = _cluster(root, "leader", bindir), _cluster(root, "subscriber", bindir)
        clusters = [leader, sub]
        leader_cfg = _config(root / "leader.yaml", leader, "leader", token)
        sub_cfg = _config(root / "sub.yaml", sub, "subscriber", token)
        node.setup(leader_cfg)
        node.setup(sub_cfg)
        list_id = _fill(leader_cfg.database_url, args.dossiers)
        target_url = sub.tcp_url("raw_target", ADMIN, PASSWORD)
        with psycopg.connect(target_url, autocommit=True) as conn:
            conn.execute("INSERT INTO dossier_list (id, name) VALUES (%s, 'raw')", [list_id])
        raw = _raw_pipe(leader_cfg.database_url, target_url, list_id)
        with psycopg.connect(sub_cfg.database_url, autocommit=True) as conn:
            local = conn.execute(
                "INSERT INTO dossier_list (name) VALUES ('replica') RETURNING id"
            ).fetchone()[0]  # type: ignore[index]
        leader_url = leader.tcp_url(DB, "x").replace("x@", "")
        start = time.perf_counter()
        result = links.attach(sub_cfg, links.AttachRequest(list_id, leader_url, int(local)))
        attach_s = time.perf_counter() - start
        assert result["dossiers"] == args.dossiers and result["faces"] == args.dossiers
        print(
            f"PostgreSQL {server_version(bindir)}, {args.dossiers} dossiers + {args.dossiers} faces, "
            f"{os.cpu_count()} cores"
        )
        print(f"raw binary COPY pipe (baseline): {raw:.2f}s")
        print(f"attach with sync_at_creation:    {attach_s:.2f}s")
        print(f"ratio attach / raw pipe:         {attach_s / raw:.2f}")
    finally:
        for cluster in clusters:
            cluster.remove()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
