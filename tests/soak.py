"""The soak: `./run soak --minutes N [--seed S]`.

A Leader and a Subscriber on local clusters; for N minutes, at random: Leader writes (inserts,
updates, deletes, moves and swaps across lists, in transactions of one to many rows),
attaches, detaches (kept or purged), repairs, syncs and ticks of continuous and windowed
(every minute) lists, and faults: the CLI killed with SIGKILL at a random fault point, the
Leader stopped with -m immediate, the Subscriber restarted; meanwhile another writer (or
--writers N) keeps writing on the Leader, so every command meets transactions in flight. Every
command runs as its own process, as a user or a timer runs it. At the end the Subscriber converges (tick, sync
--all), `verify` must find every replica equal, and the ledger counts what was done and what
was lost: rows missing from a replica, rows in a replica its Leader list does not have
(duplicated or leaked), rows of the Subscriber's own lists changed. All must be 0.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.sites import Sites, started
from pgsync_dossier.clusters import find_bindir
from pgsync_dossier.faults import POINTS

LEADER_LISTS = 8
MINUTELY = "FREQ=MINUTELY"


@dataclass
class Soak:
    sites: Sites
    rng: random.Random
    ledger: Counter[str] = field(default_factory=Counter)
    attached: dict[int, int] = field(default_factory=dict)  # local list -> Leader list
    free_local: list[int] = field(default_factory=list)
    draining: list[int] = field(default_factory=list)  # detached, with dossiers still in transit
    leader_lists: list[int] = field(default_factory=list)
    own_lists: dict[int, int] = field(default_factory=dict)  # the Subscriber's own lists: rows
    converging: list[str] = field(default_factory=list)  # the final commands' exit and stderr
    last_stderr: str = ""
    last_stdout: str = ""
    timeline: list[str] = field(default_factory=list)  # what was done, in order, for a diagnosis
    findings: list[str] = field(default_factory=list)  # what is not a loss but is not right either
    reported_faces: set[str] = field(default_factory=set)  # faces already in the findings
    started: float = field(default_factory=time.monotonic)

    def record(self, what: str) -> None:
        self.timeline.append(f"{time.monotonic() - self.started:8.2f} {what}")

    def cli(self, *args: str, fault: str | None = None) -> int:
        env = {"PGSYNC_DOSSIER_FAULT": fault} if fault else None
        result = self.sites.cli("subscriber", *args, env=env)
        self.record(f"{' '.join(args)}{f' [fault {fault}]' if fault else ''}: exit {result.exit_code}")
        self.last_stderr = result.stderr.strip()[-600:]
        self.last_stdout = result.stdout
        if result.exit_code not in (0, 1, 3, 4, -9):
            raise RuntimeError(f"{' '.join(args)}: exit {result.exit_code}: {result.stderr.strip()[-400:]}")
        if "Traceback" in result.stderr or "internal error" in result.stderr:
            raise RuntimeError(f"{' '.join(args)} crashed: {result.stderr.strip()[-800:]}")
        self.ledger[f"command {args[0]} (exit {result.exit_code})"] += 1
        if result.exit_code in (1, 3):  # a refusal or a failure: say which, so a run can be read
            self.ledger[f"command {args[0]} (exit {result.exit_code}) why: {_reason(result.stderr)}"] += 1
        return result.exit_code

    # -- the Leader's own life --------------------------------------------------------------
    def leader_writes(self, rng: random.Random | None = None, who: str = "leader") -> None:
        """One Leader transaction; `who` names the writer in the ledger and the timeline."""
        rng = rng or self.rng
        lists = self.leader_lists
        try:
            self._leader_write(rng, who, lists)
        except psycopg.errors.DeadlockDetected:  # two writers swapping the same dossiers
            self.ledger[f"{who} writes aborted by a deadlock"] += 1

    def _leader_write(self, rng: random.Random, who: str, lists: list[int]) -> None:
        with self.sites.connect(self.sites.leader) as conn, conn.transaction():
            kind = rng.choice(["insert", "insert", "update", "delete", "move", "swap", "bulk"])
            if kind in ("insert", "bulk"):
                count = 200 if kind == "bulk" else rng.randint(1, 5)
                target = rng.choice(lists)
                rows = conn.execute(
                    "WITH d AS (INSERT INTO dossier (dossier_list_id, name) SELECT %(l)s, 'soak ' || g "
                    "FROM generate_series(1, %(n)s) g RETURNING id) INSERT INTO dossier_face "
                    "(dossier_id, embedding, model) SELECT id, gen_random_uuid()::text::bytea, 'm' FROM d "
                    "RETURNING dossier_id",
                    {"l": target, "n": count},
                ).fetchall()
                what = f"into {target}"
            elif kind == "update":
                target = rng.choice(lists)
                rows = conn.execute(
                    "UPDATE dossier SET comment = md5(random()::text) WHERE id IN "
                    "(SELECT id FROM dossier WHERE dossier_list_id = %s ORDER BY random() LIMIT 5) "
                    "RETURNING id",
                    [target],
                ).fetchall()
                what = f"in {target}"
            elif kind == "delete":
                target = rng.choice(lists)
                rows = conn.execute(
                    "DELETE FROM dossier WHERE id IN "
                    "(SELECT id FROM dossier WHERE dossier_list_id = %s ORDER BY random() LIMIT 2) "
                    "RETURNING id",
                    [target],
                ).fetchall()
                what = f"from {target}"
            elif kind == "move":
                source, target = rng.sample(lists, 2)
                rows = conn.execute(
                    "UPDATE dossier SET dossier_list_id = %s WHERE id IN "
                    "(SELECT id FROM dossier WHERE dossier_list_id = %s ORDER BY random() LIMIT 3) "
                    "RETURNING id",
                    [target, source],
                ).fetchall()
                what = f"{source} -> {target}"
            else:  # a swap of two dossiers between two lists, in one transaction
                a, b = rng.sample(lists, 2)
                x = conn.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [a]).fetchone()
                y = conn.execute("SELECT id FROM dossier WHERE dossier_list_id = %s LIMIT 1", [b]).fetchone()
                rows = [row for row in (x, y) if row]
                if x and y:
                    conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [b, x["id"]])
                    conn.execute("UPDATE dossier SET dossier_list_id = %s WHERE id = %s", [a, y["id"]])
                what = f"{a} <-> {b}"
        ids = [str(next(iter(row.values()))) for row in rows]
        self.record(f"{who} {kind} {what}: {' '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}")
        self.ledger[f"{who} {kind}"] += 1

    def write_meanwhile(self, stop: threading.Event, seed: int) -> None:
        """A second writer on the Leader, all along: copies, repairs, detaches and syncs meet
        transactions in flight, as they do on a Leader people use. It waits out the Leader's
        restarts."""
        rng = random.Random(seed)  # noqa: S311 - which work to do, not a secret
        while not stop.wait(rng.uniform(0.02, 0.2)):
            try:
                self.leader_writes(rng, "concurrent")
            except psycopg.Error as exc:  # the Leader restarting under it
                self.ledger[f"concurrent writes failed ({type(exc).__name__})"] += 1
                stop.wait(0.5)

    # -- the Subscriber's operator and timer ------------------------------------------------
    def attach(self, fault: str | None = None) -> None:
        taken = set(self.attached.values())
        remotes = [r for r in self.leader_lists if r not in taken]
        if not remotes or not self.free_local:
            return
        remote, local = self.rng.choice(remotes), self.free_local.pop(0)
        schedule = ["--schedule", MINUTELY] if self.rng.random() < 0.3 else []
        url = self.sites.leader_url
        self.cli(
            "attach",
            "--remote-list",
            str(remote),
            "--remote-url",
            url,
            "--local-list",
            str(local),
            *schedule,
            fault=fault,
        )
        if "without dossiers" in self.last_stderr:
            self.findings += self.orphan_faces(local)
        self.attached[local] = remote  # whatever the outcome: the next attach or tick finishes it

    def detach(self, fault: str | None = None) -> None:
        if not self.attached:
            return
        local = self.rng.choice(sorted(self.attached))
        if self.cli("detach", str(local), "--purge", "--json", fault=fault) != 0:
            return
        del self.attached[local]
        if json.loads(self.last_stdout)["kept_in_transit"]:
            # Dossiers the Leader moved into the group's other lists stay here until their
            # moves arrive (the detach said so): the list is not empty yet.
            self.draining.append(local)
            self.ledger["detaches that kept dossiers in transit (their stream was behind)"] += 1
        else:
            self.free_local.append(local)

    def fault(self) -> None:
        kind = self.rng.choice(["kill-cli", "kill-cli", "leader-immediate", "subscriber-restart"])
        self.ledger[f"fault {kind}"] += 1
        if kind == "kill-cli":
            point = self.rng.choice(POINTS)
            self.ledger[f"fault kill at {point}"] += 1
            if point.startswith(("attach", "group", "copy")):
                self.attach(fault=point)
            elif point.startswith("detach"):
                self.detach(fault=point)
            elif point.startswith("repair") and self.attached:
                self.cli("repair", str(self.rng.choice(sorted(self.attached))), "--confirm", fault=point)
            else:
                self.cli("sync", "--all", "--timeout", "60", fault=point)
        elif kind == "leader-immediate":
            self.record("leader stopped -m immediate")
            self.sites.leader.stop(mode="immediate")
            self.cli("tick", "--timeout", "30")  # the Leader is away for a moment
            self.sites.leader.start()
        else:
            self.record("subscriber restarted")
            self.sites.subscriber.stop(mode="fast")
            self.sites.subscriber.start()

    def reconcile(self) -> None:
        """Lists this soak attached that the Subscriber no longer replicates are ordinary lists
        again: an attach killed before it recorded its link, or a detach killed half-way that
        a tick finished, keeping the rows. Empty them (as their DBA may now) and use them
        again; without this they would stay taken, and the soak would go on refused."""
        linked = {
            int(row["local_list_id"])
            for row in self.sites.execute(self.sites.subscriber, "SELECT local_list_id FROM pgsync.link")
        }
        for local in [local for local in self.attached if local not in linked]:
            self.findings += self.orphan_faces(local)
            emptied = "DELETE FROM dossier WHERE dossier_list_id = %s"
            self.sites.execute(self.sites.subscriber, emptied, [local])
            del self.attached[local]
            self.free_local.append(local)
            self.record(f"list {local} is no longer a replica here: emptied and free again")
            self.ledger["lists found no longer attached (a killed attach or detach), reused"] += 1
        for local in list(self.draining):
            if self.local_dossiers(local) == 0:
                self.draining.remove(local)
                self.free_local.append(local)
                self.ledger["lists detached with dossiers in transit, free once the moves arrived"] += 1

    def orphan_faces(self, local: int) -> list[str]:
        """Faces in local list `local` whose dossier is not in it, each reported once: where
        each is on both sides, and what was done with the list and the dossier."""
        found = self.sites.execute(
            self.sites.subscriber,
            "SELECT f.id::text AS face, f.dossier_id::text AS dossier, d.dossier_list_id AS dossier_here "
            "FROM dossier_face AS f LEFT JOIN dossier AS d ON d.id = f.dossier_id "
            "WHERE f.dossier_list_id = %s AND d.dossier_list_id IS DISTINCT FROM f.dossier_list_id",
            [local],
        )
        orphans = [row for row in found if row["face"] not in self.reported_faces]
        if not orphans:
            return []
        self.reported_faces.update(row["face"] for row in orphans)
        self.ledger["faces found apart from their dossier (see findings)"] += len(orphans)
        lines = [
            f"{self.timeline[-1] if self.timeline else ''}: list {local} has {len(orphans)} new such faces"
        ]
        for row in orphans[:3]:
            on_leader = self.sites.execute(
                self.sites.leader,
                "SELECT (SELECT dossier_list_id FROM dossier_face WHERE id = %s) AS face_list, "
                "(SELECT dossier_list_id FROM dossier WHERE id = %s) AS dossier_list",
                [row["face"], row["dossier"]],
            )
            lines.append(
                f"  face {row['face']} of dossier {row['dossier']} (here in list {row['dossier_here']}); "
                f"on the Leader {on_leader[0]}"
            )
            lines += [f"    {event}" for event in self.timeline if row["dossier"] in event][-6:]
        mentions = re.compile(rf"(--local-list {local}\b|^\s*[\d.]+ \S+ {local}\b|\blist {local}\b)")
        lines += [f"    {event}" for event in self.timeline if mentions.search(event)][-12:]
        return lines

    def local_dossiers(self, local: int) -> int:
        count = "SELECT count(*) AS n FROM dossier WHERE dossier_list_id = %s"
        return int(self.sites.execute(self.sites.subscriber, count, [local])[0]["n"])

    def step(self) -> None:
        roll = self.rng.random()
        if roll >= 0.45:
            self.reconcile()
        if roll < 0.45:
            self.leader_writes()
        elif roll < 0.55:
            self.attach()
        elif roll < 0.60:
            self.detach()
        elif roll < 0.65 and self.attached:
            self.cli("repair", str(self.rng.choice(sorted(self.attached))), "--confirm", "--timeout", "120")
        elif roll < 0.80:
            self.cli("tick", "--timeout", "60")
        elif roll < 0.92:
            self.cli("sync", "--all", "--timeout", "60")
        else:
            self.fault()

    # -- the end --------------------------------------------------------------------------
    def converge(self) -> list[dict[str, Any]]:
        for command in (("tick", "--timeout", "300"), ("sync", "--all", "--timeout", "300")):
            code = self.cli(*command)
            self.converging.append(f"{' '.join(command)}: exit {code} {self.last_stderr}")
        verified = self.sites.cli("subscriber", "verify", "--json", "--timeout", "300")
        rows: list[dict[str, Any]] = json.loads(verified.stdout or "[]")
        return rows

    def diagnosis(self, verified: list[dict[str, Any]]) -> list[str]:
        """What a failed soak leaves to look at, printed while the clusters still run."""
        lines = [*self.converging]
        for row in verified:
            if row.get("match") is not True:
                lines += [json.dumps(row, default=str), *self.differing_rows(row)]
        for query in (
            "SELECT local_list_id, remote_list_id, group_id, state, last_error FROM pgsync.link",
            "SELECT group_id, reason, ok, error, note, started_at FROM pgsync.sync_run "
            "ORDER BY id DESC LIMIT 12",
        ):
            lines += [
                json.dumps(row, default=str) for row in self.sites.execute(self.sites.subscriber, query)
            ]
        return lines

    def differing_rows(self, verified: dict[str, Any]) -> list[str]:
        """Each row that differs, where it is on both sides, and what the timeline did with it."""
        query = "SELECT id::text FROM {} WHERE dossier_list_id = %s"
        lines = []
        for table in ("dossier", "dossier_face"):
            leader = {
                r["id"]: r
                for r in self.sites.execute(self.sites.leader, query.format(table), [verified["remote_list"]])
            }
            replica = {
                r["id"]: r
                for r in self.sites.execute(
                    self.sites.subscriber, query.format(table), [verified["local_list"]]
                )
            }
            for row_id in sorted(leader.keys() ^ replica.keys()):
                where = "SELECT dossier_list_id AS list, row_version FROM {} WHERE id = %s"
                on_leader = self.sites.execute(self.sites.leader, where.format(table), [row_id])
                on_replica = self.sites.execute(self.sites.subscriber, where.format(table), [row_id])
                lines.append(f"{table} {row_id}: Leader {on_leader}, Subscriber {on_replica}")
                lines += [f"    {event}" for event in self.timeline if row_id in event]
        return lines

    def count_losses(self, verified: list[dict[str, Any]]) -> None:
        self.ledger["rows lost"] += sum(int(r["missing"] or 0) for r in verified)
        self.ledger["rows duplicated or leaked"] += sum(int(r["extra"] or 0) for r in verified)
        self.ledger["rows differing"] += sum(int(r["changed"] or 0) for r in verified)
        self.ledger["replicas not verified"] += sum(1 for r in verified if r["match"] is not True)
        for local, rows in self.own_lists.items():
            changed = abs(self.local_dossiers(local) - rows)
            self.ledger["rows of the Subscriber's own lists changed"] += changed
        runs = self.sites.execute(
            self.sites.subscriber, "SELECT reason, count(*) AS n FROM pgsync.sync_run GROUP BY 1"
        )
        for row in runs:
            self.ledger[f"sync runs: {row['reason']}"] += int(row["n"])
        heals = self.sites.execute(
            self.sites.subscriber, "SELECT note FROM pgsync.sync_run WHERE reason = 'heal'"
        )
        for row in heals:
            self.ledger[f"sync runs: heal, why: {_kind(row['note'] or '(no note)')}"] += 1


def _reason(stderr: str) -> str:
    """A command's error line, as _kind gives it."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    return _kind(lines[-1].removeprefix("error: ")) if lines else "(no error line)"


def _kind(text: str) -> str:
    """A message with its numbers taken out, so that messages of one kind count together."""
    return re.sub(r"\d+", "N", text)[:110]


MUST_BE_ZERO = (
    "rows lost",
    "rows duplicated or leaked",
    "rows differing",
    "replicas not verified",
    "rows of the Subscriber's own lists changed",
)


def _prepare(sites: Sites, soak: Soak) -> None:
    for n in range(LEADER_LISTS):
        remote = sites.make_list(sites.leader, f"soak {n}")
        sites.fill(remote, 50)
        soak.leader_lists.append(remote)
    for n in range(LEADER_LISTS):
        soak.free_local.append(sites.make_list(sites.subscriber, f"replica slot {n}"))
    for n in range(2):  # the Subscriber's own lists, which replication must never touch
        own = sites.make_list(sites.subscriber, f"own {n}")
        sites.execute(
            sites.subscriber,
            "INSERT INTO dossier (dossier_list_id, name) "
            "SELECT %s, 'own ' || g FROM generate_series(1, 25) g",
            [own],
        )
        soak.own_lists[own] = 25


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./run soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=None, help="repeat a run (printed at the start)")
    parser.add_argument("--pg-bin", default=None, help="server bin/ directory")
    parser.add_argument(
        "--writers",
        type=int,
        default=1,
        help="Leader writers running all along, besides the steps' own writes",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    bindir = Path(args.pg_bin) if args.pg_bin else find_bindir()
    print(f"soak: {args.minutes:g} minutes, seed {seed}, PostgreSQL from {bindir}", flush=True)
    with started(bindir) as sites:
        soak = Soak(sites, random.Random(seed))  # noqa: S311 - which work to do, not a secret
        _prepare(sites, soak)
        end = time.monotonic() + args.minutes * 60
        stop = threading.Event()
        writers = [
            threading.Thread(target=soak.write_meanwhile, args=(stop, seed + n + 1), daemon=True)
            for n in range(args.writers)
        ]
        for writer in writers:
            writer.start()
        try:
            while time.monotonic() < end:
                soak.step()
                soak.ledger["operations"] += 1
        finally:
            stop.set()
            for writer in writers:
                writer.join()
        verified = soak.converge()
        soak.reconcile()
        soak.count_losses(verified)
        if any(soak.ledger[key] for key in MUST_BE_ZERO):
            print("\ndiagnosis:", *soak.diagnosis(verified), sep="\n  ")
            print("\nthe last operations:", *soak.timeline[-40:], sep="\n  ")
    width = max(len(key) for key in soak.ledger)
    print("\nledger:")
    for key, value in sorted(soak.ledger.items()):
        print(f"  {key.ljust(width)}  {value}")
    if soak.findings:
        print("\nfindings (no row lost, but worth a look):", *soak.findings, sep="\n  ")
    bad = [key for key in MUST_BE_ZERO if soak.ledger[key]]
    if bad:
        print(f"\nsoak FAILED (seed {seed}): {', '.join(bad)}")
        return 1
    print(f"\nsoak passed: {len(verified)} replicas equal to their Leader lists, nothing lost (seed {seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
