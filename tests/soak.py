"""The soak: `./run soak --minutes N [--seed S] [--self-test]`.

A Leader and two Subscribers on local clusters (bench/sites.py), each Subscriber its own node
with its own config and `setup`. For N minutes, at random: Leader writes (inserts, updates,
deletes, moves and swaps across lists, in transactions of one to many rows) and, on either
Subscriber, attaches, detaches (purged), repairs, syncs and ticks of continuous and windowed
(every minute) lists, and faults: the CLI killed with SIGKILL at a random fault point, the
Leader stopped with -m immediate, either Subscriber restarted; meanwhile another writer (or
--writers N) keeps writing on the Leader, so every command meets transactions in flight. Every
command runs as its own process, as a user or a timer runs it.

At the end each Subscriber converges (tick, sync --all), and the figures come from the SQL
oracle (tests/oracle.py), which reads both databases itself and never asks the product: for
every (Leader list, replica) pair the soak itself attached, the dossiers and the faces lost,
duplicated or leaked, and differing (any column); faces apart from their dossier on the Leader
and on each Subscriber; rows of the Subscribers' own lists changed since the start (each row's
digest); rows left in lists that are no longer replicas. The product's `verify --json` is then
run as something under test: an exit code its own rows do not explain, output that does not
parse, an attached list left out or one it did not attach, or a verdict other than the
oracle's counts as "verify disagreed with the oracle". Lists whose link is gone (a killed
attach or detach) are emptied to be used again; their rows are counted and printed first, and
a link gone although its attach succeeded and no detach ran since is counted as suspicious.
Every line of MUST_BE_ZERO must be 0, or the soak exits 1.

--self-test runs the same soak, then, after convergence and before the oracle and verify,
damages one Subscriber behind the product's back (as superuser in replica mode, so no trigger
fires): one replicated dossier is deleted with its faces, one face of another dossier gets
another embedding; and verify is blinded (fault `verify.blind`: it reports every list equal).
The soak must then fail with exactly that in its ledger: 1 dossier lost, the dossier's faces
lost, 1 face differing, verify disagreeing with the oracle on the damaged list, all else 0. It
exits 1 when it found exactly that, 3 when it did not (its evidence is then not to be trusted).
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
from psycopg import sql

from bench.sites import Sites, Timed, started
from pgsync_dossier.clusters import LocalCluster, find_bindir
from pgsync_dossier.faults import FAULT_ENV, POINTS, VERIFY_BLIND
from tests import oracle

LEADER_LISTS = 8
MINUTELY = "FREQ=MINUTELY"
TABLE_WORDS = {"dossier": "dossiers", "dossier_face": "faces"}
#: Exit codes: the soak passed; it found losses (a self-test that found what it planted, too);
#: a self-test that did not find exactly what it planted.
PASSED, FAILED, SELF_TEST_MISSED = 0, 1, 3


@dataclass
class Replica:
    """One Subscriber as the soak sees it: what it attached there, and what is its own."""

    name: str  # its config's name in Sites.configs, which `Sites.cli` takes
    cluster: LocalCluster
    attached: dict[int, int] = field(default_factory=dict)  # local list -> Leader list
    free_local: list[int] = field(default_factory=list)
    draining: list[int] = field(default_factory=list)  # detached, with dossiers still in transit
    own_lists: dict[int, dict[str, dict[str, str]]] = field(default_factory=dict)  # table -> id -> digest
    #: Attached lists whose last attach exited 0 and that no detach has touched since: their
    #: link has no reason to go away, so finding it gone is suspicious.
    vouched: set[int] = field(default_factory=set)
    converging: list[str] = field(default_factory=list)  # the final commands' exit and stderr


@dataclass
class Planted:
    """The self-test's damage, done behind the product's back on one Subscriber."""

    replica: str
    local: int
    remote: int
    dossier: str
    faces: list[str]  # the deleted dossier's faces, deleted with it
    face: str  # a face of another dossier, its embedding changed

    def expected(self) -> dict[str, int]:
        """The MUST_BE_ZERO lines the soak must find non-zero, with their figure."""
        return {
            "dossiers lost": 1,
            "faces lost": len(self.faces),
            "faces differing": 1,
            "verify disagreed with the oracle": 1,  # the damaged list, reported equal by the blind
        }


@dataclass
class Soak:
    sites: Sites
    rng: random.Random
    replicas: list[Replica]
    ledger: Counter[str] = field(default_factory=Counter)
    leader_lists: list[int] = field(default_factory=list)
    last_stderr: str = ""
    last_stdout: str = ""
    timeline: list[str] = field(default_factory=list)  # what was done, in order, for a diagnosis
    findings: list[str] = field(default_factory=list)  # what is not a loss but is not right either
    reported_faces: set[tuple[str, str]] = field(default_factory=set)  # (replica, face) in findings
    verdicts: dict[str, oracle.Convergence] = field(default_factory=dict)  # the oracle's, by replica
    disagreements: list[str] = field(default_factory=list)  # where verify and the oracle differ
    started: float = field(default_factory=time.monotonic)

    def record(self, what: str) -> None:
        self.timeline.append(f"{time.monotonic() - self.started:8.2f} {what}")

    def cli(self, replica: Replica, *args: str, fault: str | None = None) -> int:
        env = {FAULT_ENV: fault} if fault else None
        result = self.sites.cli(replica.name, *args, env=env)
        self.record(
            f"{replica.name}: {' '.join(args)}{f' [fault {fault}]' if fault else ''}: exit {result.exit_code}"
        )
        self.last_stderr = result.stderr.strip()[-600:]
        self.last_stdout = result.stdout
        if result.exit_code not in (0, 1, 3, 4, -9):
            raise RuntimeError(f"{' '.join(args)}: exit {result.exit_code}: {result.stderr.strip()[-400:]}")
        if "Traceback" in result.stderr or "internal error" in result.stderr:
            raise RuntimeError(f"{' '.join(args)} crashed: {result.stderr.strip()[-800:]}")
        self.ledger[f"command {args[0]} (exit {result.exit_code})"] += 1
        self.ledger[f"{replica.name}: command {args[0]}"] += 1
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

    # -- the Subscribers' operators and timers ----------------------------------------------
    def attach(self, replica: Replica, fault: str | None = None) -> None:
        taken = set(replica.attached.values())
        remotes = [r for r in self.leader_lists if r not in taken]
        if not remotes or not replica.free_local:
            return
        remote, local = self.rng.choice(remotes), replica.free_local.pop(0)
        schedule = ["--schedule", MINUTELY] if self.rng.random() < 0.3 else []
        url = self.sites.leader_url
        code = self.cli(
            replica,
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
            self.findings += self.orphan_faces(replica, local)
        self.attached_as(replica, local, remote, vouched=code == 0)

    def attached_as(self, replica: Replica, local: int, remote: int, *, vouched: bool) -> None:
        """Whatever an attach's outcome, the list is taken: the next attach or tick finishes
        it, or reconcile finds it unlinked. Only an attach that exited 0 vouches for its link."""
        replica.attached[local] = remote
        if vouched:
            replica.vouched.add(local)
        else:
            replica.vouched.discard(local)

    def detach(self, replica: Replica, fault: str | None = None) -> None:
        if not replica.attached:
            return
        local = self.rng.choice(sorted(replica.attached))
        replica.vouched.discard(local)  # whatever its outcome, a detach may take the link away
        if self.cli(replica, "detach", str(local), "--purge", "--json", fault=fault) != 0:
            return
        del replica.attached[local]
        if json.loads(self.last_stdout)["kept_in_transit"]:
            # Dossiers the Leader moved into the group's other lists stay here until their
            # moves arrive (the detach said so): the list is not empty yet.
            replica.draining.append(local)
            self.ledger["detaches that kept dossiers in transit (their stream was behind)"] += 1
        else:
            replica.free_local.append(local)

    def repair(self, replica: Replica, *extra: str, fault: str | None = None) -> None:
        if replica.attached:
            local = self.rng.choice(sorted(replica.attached))
            self.cli(replica, "repair", str(local), "--confirm", *extra, fault=fault)

    def fault(self) -> None:
        kind = self.rng.choice(["kill-cli", "kill-cli", "leader-immediate", "subscriber-restart"])
        replica = self.rng.choice(self.replicas)
        self.ledger[f"fault {kind}"] += 1
        if kind == "kill-cli":
            point = self.rng.choice(POINTS)
            self.ledger[f"fault kill at {point}"] += 1
            if point.startswith(("attach", "group", "copy")):
                self.attach(replica, fault=point)
            elif point.startswith("detach"):
                self.detach(replica, fault=point)
            elif point.startswith("repair"):
                self.repair(replica, fault=point)
            else:
                self.cli(replica, "sync", "--all", "--timeout", "60", fault=point)
        elif kind == "leader-immediate":
            self.record("leader stopped -m immediate")
            self.sites.leader.stop(mode="immediate")
            self.cli(replica, "tick", "--timeout", "30")  # the Leader is away for a moment
            self.sites.leader.start()
        else:
            self.record(f"{replica.name} restarted")
            self.ledger[f"fault {kind} ({replica.name})"] += 1
            replica.cluster.stop(mode="fast")
            replica.cluster.start()

    def reconcile(self, replica: Replica) -> None:
        """Lists this soak attached that the Subscriber no longer replicates are ordinary lists
        again: an attach killed before it recorded its link, or a detach killed half-way that
        a tick finished, keeping the rows. Empty them (as their DBA may now) and use them
        again; without this they would stay taken, and the soak would go on refused. The rows
        are counted and printed before they go, so that a link dropped by a bug shows; a link
        gone although its attach succeeded (or it was seen ready) and no detach ran since is
        suspicious, and counted so."""
        states = {
            int(row["local_list_id"]): row["state"]
            for row in self.sites.execute(replica.cluster, "SELECT local_list_id, state FROM pgsync.link")
        }
        linked = set(states)
        # A link seen ready is vouched for too (an attach killed after its copy, finished by a
        # later tick or sync): from then on only a detach may take it away.
        replica.vouched.update(local for local in replica.attached if states.get(local) == "ready")
        for local in [local for local in replica.attached if local not in linked]:
            self.findings += self.orphan_faces(replica, local)
            remote = replica.attached.pop(local)
            suspicious = local in replica.vouched
            replica.vouched.discard(local)
            self.empty_unlinked(replica, local, remote, suspicious)
            replica.free_local.append(local)
            self.record(f"{replica.name}: list {local} is no longer a replica here: emptied and free again")
            self.ledger["lists found no longer attached (a killed attach or detach), reused"] += 1
        for local in list(replica.draining):
            if self.local_rows(replica, local) == (0, 0):
                replica.draining.remove(local)
                replica.free_local.append(local)
                self.ledger["lists detached with dossiers in transit, free once the moves arrived"] += 1

    def empty_unlinked(self, replica: Replica, local: int, remote: int, suspicious: bool) -> None:
        """Delete the rows of a list found unlinked, counting and printing them first."""
        with self.sites.connect(replica.cluster) as conn, conn.transaction():
            ids = {
                table: [
                    str(row["id"])
                    for row in conn.execute(
                        sql.SQL(
                            "SELECT id::text AS id FROM {} WHERE dossier_list_id = %s ORDER BY id"
                        ).format(sql.Identifier(table)),
                        [local],
                    ).fetchall()
                ]
                for table in ("dossier", "dossier_face")
            }
            conn.execute("DELETE FROM dossier_face WHERE dossier_list_id = %s", [local])
            conn.execute("DELETE FROM dossier WHERE dossier_list_id = %s", [local])
        for table, words in TABLE_WORDS.items():
            self.ledger[f"{words} emptied from lists found no longer replicas"] += len(ids[table])
        why = (
            "SUSPICIOUS: it was attached (exit 0, or seen ready) and no detach ran since"
            if suspicious
            else "its last attach or detach did not finish"
        )
        if suspicious:
            self.ledger["links gone that the soak did not detach (suspicious)"] += 1
        lines = [
            f"{replica.name}: list {local} (replica of Leader list {remote}) found unlinked ({why}); "
            f"emptied: {len(ids['dossier'])} dossiers, {len(ids['dossier_face'])} faces"
        ]
        for table, words in TABLE_WORDS.items():
            if ids[table]:
                more = f" ... {len(ids[table]) - 10} more" if len(ids[table]) > 10 else ""
                lines.append(f"  {words}: {' '.join(ids[table][:10])}{more}")
        if suspicious:
            lines += [f"    {event}" for event in self.timeline if _mentions(event, replica, local)][-12:]
        if ids["dossier"] or ids["dossier_face"] or suspicious:
            print(f"soak: {lines[0]}", *lines[1:], sep="\n  ", flush=True)
            self.findings += lines

    def orphan_faces(self, replica: Replica, local: int) -> list[str]:
        """Faces in local list `local` whose dossier is not in it, each reported once: where
        each is on both sides, and what was done with the list and the dossier."""
        with self.sites.connect(replica.cluster) as conn:
            found = [apart for apart in oracle.faces_apart(conn) if apart.face_list == local]
        orphans = [apart for apart in found if (replica.name, apart.face) not in self.reported_faces]
        if not orphans:
            return []
        self.reported_faces.update((replica.name, apart.face) for apart in orphans)
        self.ledger["faces found apart from their dossier (see findings)"] += len(orphans)
        lines = [
            f"{self.timeline[-1] if self.timeline else ''}: {replica.name} list {local} has "
            f"{len(orphans)} new such faces"
        ]
        for apart in orphans[:3]:
            on_leader = self.sites.execute(
                self.sites.leader,
                "SELECT (SELECT dossier_list_id FROM dossier_face WHERE id = %s) AS face_list, "
                "(SELECT dossier_list_id FROM dossier WHERE id = %s) AS dossier_list",
                [apart.face, apart.dossier],
            )
            lines.append(
                f"  face {apart.face} of dossier {apart.dossier} (here in list {apart.dossier_list}); "
                f"on the Leader {on_leader[0]}"
            )
            lines += [f"    {event}" for event in self.timeline if apart.dossier in event][-6:]
        lines += [f"    {event}" for event in self.timeline if _mentions(event, replica, local)][-12:]
        return lines

    def local_rows(self, replica: Replica, local: int) -> tuple[int, int]:
        """Dossiers and faces in a local list."""
        row = self.sites.execute(
            replica.cluster,
            "SELECT (SELECT count(*) FROM dossier WHERE dossier_list_id = %(l)s) AS dossiers, "
            "(SELECT count(*) FROM dossier_face WHERE dossier_list_id = %(l)s) AS faces",
            {"l": local},
        )[0]
        return int(row["dossiers"]), int(row["faces"])

    def step(self) -> None:
        roll = self.rng.random()
        replica = self.rng.choice(self.replicas)
        if roll >= 0.45:
            self.reconcile(replica)
        if roll < 0.45:
            self.leader_writes()
        elif roll < 0.55:
            self.attach(replica)
        elif roll < 0.60:
            self.detach(replica)
        elif roll < 0.65:
            self.repair(replica, "--timeout", "120")
        elif roll < 0.80:
            self.cli(replica, "tick", "--timeout", "60")
        elif roll < 0.92:
            self.cli(replica, "sync", "--all", "--timeout", "60")
        else:
            self.fault()

    # -- the end --------------------------------------------------------------------------
    def converge(self) -> None:
        """Each Subscriber finishes what it can (tick, sync --all); lists found unlinked then
        are emptied and free, as during the run."""
        for replica in self.replicas:
            for command in (("tick", "--timeout", "300"), ("sync", "--all", "--timeout", "300")):
                code = self.cli(replica, *command)
                replica.converging.append(
                    f"{replica.name}: {' '.join(command)}: exit {code} {self.last_stderr}"
                )
        for replica in self.replicas:
            self.reconcile(replica)

    def plant(self) -> Planted | None:
        """The self-test's damage, behind the product's back (superuser, replica mode: neither
        the guard nor any other trigger runs, and the foreign key does not cascade): one
        replicated dossier deleted with its faces, and one face of another dossier given
        another embedding, both in one replica whose rows the oracle finds equal to the
        Leader's, so that the damage is all the oracle can find there."""
        for replica in self.replicas:
            for local, remote in sorted(replica.attached.items()):
                with (
                    self.sites.connect(self.sites.leader) as on_leader,
                    self.sites.connect(replica.cluster) as on_replica,
                ):
                    found = oracle.compare_list(on_leader, remote, on_replica, local)
                    if not found.equal:
                        continue
                    faces_of = _faces_by_dossier(on_replica, local)
                    with_faces = sorted(dossier for dossier, faces in faces_of.items() if faces)
                    if len(with_faces) < 2:
                        continue
                    dossier, other = with_faces[0], with_faces[1]
                    face = faces_of[other][0]
                    with on_replica.transaction():
                        on_replica.execute("SET LOCAL session_replication_role = replica")
                        on_replica.execute("DELETE FROM dossier_face WHERE dossier_id = %s", [dossier])
                        on_replica.execute("DELETE FROM dossier WHERE id = %s", [dossier])
                        on_replica.execute(
                            "UPDATE dossier_face SET embedding = "
                            "set_byte(embedding, 0, 255 - get_byte(embedding, 0)) WHERE id = %s",
                            [face],
                        )
                planted = Planted(replica.name, local, remote, dossier, faces_of[dossier], face)
                self.record(f"self-test: planted {planted}")
                return planted
        return None

    def judge(self, blind: bool) -> None:
        """The figures, from the oracle for every Subscriber; then each Subscriber's `verify`,
        checked against the oracle's verdict (blinded in the self-test)."""
        with self.sites.connect(self.sites.leader) as on_leader:
            apart_on_leader = oracle.faces_apart(on_leader)
        self.ledger["faces apart from their dossier on the Leader"] += len(apart_on_leader)
        for replica in self.replicas:
            pairs = [(remote, local) for local, remote in sorted(replica.attached.items())]
            with (
                self.sites.connect(self.sites.leader) as on_leader,
                self.sites.connect(replica.cluster) as on_replica,
            ):
                found = oracle.convergence(on_leader, on_replica, pairs, apart_on_leader)
                self.count_own_lists(replica, on_replica)
                kept = [local for _remote, local in pairs] + list(replica.own_lists) + replica.draining
                outside = oracle.rows_outside(on_replica, kept)
                for local in replica.draining:
                    dossiers, faces = self.local_rows(replica, local)
                    self.ledger["dossiers still in transit in detached lists at the end"] += dossiers
                    self.ledger["faces still in transit in detached lists at the end"] += faces
                    self.findings.append(
                        f"{replica.name}: list {local}, detached with dossiers in transit, still holds "
                        f"{dossiers} dossiers and {faces} faces after convergence"
                    )
            self.verdicts[replica.name] = found
            for table, words in TABLE_WORDS.items():
                self.ledger[f"{words} lost"] += found.count(table, "missing")
                self.ledger[f"{words} duplicated or leaked"] += found.count(table, "extra")
                self.ledger[f"{words} differing"] += found.count(table, "changed")
                self.ledger[f"{words} left in lists no longer replicas"] += outside[table]
            self.ledger["faces apart from their dossier on a Subscriber"] += len(found.apart_on_replica)
            self.ledger["replicas compared by the oracle"] += len(found.lists)
            self.ledger[f"{replica.name}: replicas compared by the oracle"] += len(found.lists)
            self.ledger["replicas found equal by the oracle"] += sum(1 for c in found.lists if c.equal)
            verified = self.sites.cli(
                replica.name,
                "verify",
                "--json",
                "--timeout",
                "300",
                env={FAULT_ENV: VERIFY_BLIND} if blind else None,
            )
            self.check_verify(replica, found, verified, blind)
        self.count_sync_runs()

    def count_own_lists(self, replica: Replica, conn: psycopg.Connection[Any]) -> None:
        """Every row of the Subscriber's own lists against its digest at the start."""
        for own, at_start in replica.own_lists.items():
            for table, words in TABLE_WORDS.items():
                diff = oracle.diff_rows(at_start[table], oracle.row_digests(conn, table, own))
                changed = len(diff.missing) + len(diff.extra) + len(diff.changed)
                self.ledger[f"{words} of the Subscribers' own lists changed"] += changed
                if changed:
                    self.findings.append(
                        f"{replica.name} own list {own}: {table} missing {diff.missing[:3]}, "
                        f"extra {diff.extra[:3]}, changed {diff.changed[:3]}"
                    )

    def check_verify(
        self, replica: Replica, found: oracle.Convergence, verified: Timed, blind: bool = False
    ) -> None:
        """The product's verify, under test: its exit must match its rows, its rows must name
        exactly the replicas the soak attached, each with the oracle's verdict. `blind` says
        the self-test blinded it (the disagreements are then expected, and labelled so)."""
        said: list[str] = []
        try:
            rows = json.loads(verified.stdout)
            reported = {int(row["local_list"]): row for row in rows}
        except (ValueError, TypeError, KeyError) as exc:
            said.append(
                f"output that does not parse ({type(exc).__name__}: {exc}), exit {verified.exit_code}: "
                f"{verified.stdout.strip()[:200]!r} {verified.stderr.strip()[-300:]!r}"
            )
            reported = None
        if reported is not None:
            all_match = all(row.get("match") is True for row in reported.values())
            if verified.exit_code != (0 if all_match else 1):
                said.append(
                    f"exit {verified.exit_code} although its rows say {'all' if all_match else 'not all'} "
                    f"match: {verified.stderr.strip()[-300:]!r}"
                )
            for comparison in found.lists:
                row = reported.pop(comparison.local, None)
                if row is None:
                    said.append(f"list {comparison.local} (attached) is left out")
                elif int(row.get("remote_list") or 0) != comparison.remote:
                    said.append(
                        f"list {comparison.local} is reported against Leader list {row.get('remote_list')}"
                    )
                elif (row.get("match") is True) != comparison.equal:
                    said.append(
                        f"list {comparison.local}: match {row.get('match')} (error {row.get('error')}), "
                        f"but the oracle finds {comparison.describe()}"
                    )
            said += [
                f"list {local} is reported, but the soak did not attach it: {row}"
                for local, row in reported.items()
            ]
        self.ledger["verify disagreed with the oracle"] += len(said)
        label = f"verify ({VERIFY_BLIND} armed)" if blind else "verify"
        self.disagreements += [f"{replica.name} {label} disagreed with the oracle: {line}" for line in said]

    def count_sync_runs(self) -> None:
        for replica in self.replicas:
            runs = self.sites.execute(
                replica.cluster, "SELECT reason, count(*) AS n FROM pgsync.sync_run GROUP BY 1"
            )
            for row in runs:
                self.ledger[f"sync runs: {row['reason']}"] += int(row["n"])
            heals = self.sites.execute(
                replica.cluster, "SELECT note FROM pgsync.sync_run WHERE reason = 'heal'"
            )
            for row in heals:
                self.ledger[f"sync runs: heal, why: {_kind(row['note'] or '(no note)')}"] += 1

    def diagnosis(self) -> list[str]:
        """What a failed soak leaves to look at, printed while the clusters still run."""
        lines = [line for replica in self.replicas for line in replica.converging]
        lines += self.disagreements
        for replica in self.replicas:
            found = self.verdicts.get(replica.name)
            if found is None:
                continue
            lines += [f"{replica.name} (oracle): {problem}" for problem in found.problems()]
            for comparison in found.lists:
                if not comparison.equal:
                    lines += self.differing_rows(replica, comparison)
            for query in (
                "SELECT local_list_id, remote_list_id, group_id, state, last_error FROM pgsync.link",
                "SELECT group_id, reason, ok, error, note, started_at FROM pgsync.sync_run "
                "ORDER BY id DESC LIMIT 12",
            ):
                lines += [
                    f"{replica.name}: {json.dumps(row, default=str)}"
                    for row in self.sites.execute(replica.cluster, query)
                ]
        return lines

    def differing_rows(self, replica: Replica, comparison: oracle.ListComparison) -> list[str]:
        """Each row the oracle found different, where it is on both sides, and what the
        timeline did with it."""
        lines = []
        for table, diff in comparison.tables.items():
            where = sql.SQL("SELECT dossier_list_id AS list, row_version FROM {} WHERE id = %s").format(
                sql.Identifier(table)
            )
            for kind in oracle.KINDS:
                for row_id in getattr(diff, kind)[:20]:
                    on_leader = self.sites.execute(self.sites.leader, where, [row_id])
                    on_replica = self.sites.execute(replica.cluster, where, [row_id])
                    lines.append(
                        f"{replica.name} list {comparison.local}: {table} {row_id} {kind}: "
                        f"Leader {on_leader}, Subscriber {on_replica}"
                    )
                    lines += [f"    {event}" for event in self.timeline if row_id in event]
        return lines


def _faces_by_dossier(conn: psycopg.Connection[Any], local: int) -> dict[str, list[str]]:
    """Each dossier of a local list with the ids of its faces in that list."""
    rows = conn.execute(
        "SELECT d.id::text AS dossier, coalesce(array_agg(f.id::text ORDER BY f.id) "
        "FILTER (WHERE f.id IS NOT NULL), '{}') AS faces FROM dossier AS d "
        "LEFT JOIN dossier_face AS f ON f.dossier_id = d.id AND f.dossier_list_id = d.dossier_list_id "
        "WHERE d.dossier_list_id = %s GROUP BY d.id",
        [local],
    ).fetchall()
    return {str(row["dossier"]): list(row["faces"]) for row in rows}


def _mentions(event: str, replica: Replica, local: int) -> bool:
    """Whether a timeline event is a command of `replica` naming local list `local`."""
    if not event.split(maxsplit=1)[-1].startswith(f"{replica.name}:"):
        return False
    return bool(re.search(rf"(--local-list {local}\b|: (detach|repair) {local}\b|\blist {local}\b)", event))


def _reason(stderr: str) -> str:
    """A command's error line, as _kind gives it."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    return _kind(lines[-1].removeprefix("error: ")) if lines else "(no error line)"


def _kind(text: str) -> str:
    """A message with its numbers taken out, so that messages of one kind count together."""
    return re.sub(r"\d+", "N", text)[:110]


MUST_BE_ZERO = (
    "dossiers lost",
    "faces lost",
    "dossiers duplicated or leaked",
    "faces duplicated or leaked",
    "dossiers differing",
    "faces differing",
    "faces apart from their dossier on the Leader",
    "faces apart from their dossier on a Subscriber",
    "dossiers of the Subscribers' own lists changed",
    "faces of the Subscribers' own lists changed",
    "dossiers left in lists no longer replicas",
    "faces left in lists no longer replicas",
    "links gone that the soak did not detach (suspicious)",
    "verify disagreed with the oracle",
)


def _prepare(sites: Sites, soak: Soak) -> None:
    for n in range(LEADER_LISTS):
        remote = sites.make_list(sites.leader, f"soak {n}")
        sites.fill(remote, 50)
        soak.leader_lists.append(remote)
    for replica in soak.replicas:
        for n in range(LEADER_LISTS):
            replica.free_local.append(sites.make_list(replica.cluster, f"replica slot {n}"))
        for n in range(2):  # the Subscriber's own lists, which replication must never touch
            own = sites.make_list(replica.cluster, f"own {n}")
            with sites.connect(replica.cluster) as conn:
                conn.execute(
                    "INSERT INTO dossier (dossier_list_id, name) "
                    "SELECT %s, 'own ' || g FROM generate_series(1, 25) g",
                    [own],
                )
                conn.execute(
                    "INSERT INTO dossier_face (dossier_id, embedding, model) "
                    "SELECT id, gen_random_uuid()::text::bytea, 'm' FROM dossier WHERE dossier_list_id = %s",
                    [own],
                )
                replica.own_lists[own] = {
                    table: oracle.row_digests(conn, table, own) for table in TABLE_WORDS
                }


def _self_test_verdict(soak: Soak, planted: Planted | None) -> int:
    """Whether the soak found exactly the damage the self-test planted, no less and no more."""
    if planted is None:
        print(
            "\nself-test MISSED: no replica equal to its Leader list with two dossiers with faces to damage"
        )
        return SELF_TEST_MISSED
    expected = planted.expected()
    wrong = [
        f"{key}: {soak.ledger[key]}, expected {expected.get(key, 0)}"
        for key in MUST_BE_ZERO
        if soak.ledger[key] != expected.get(key, 0)
    ]
    print(
        f"\nself-test planted on {planted.replica}, list {planted.local} (Leader list {planted.remote}): "
        f"dossier {planted.dossier} deleted with its {len(planted.faces)} faces ({' '.join(planted.faces)}), "
        f"face {planted.face}'s embedding changed, verify blinded ({VERIFY_BLIND})"
    )
    print(
        "self-test expects:", ", ".join(f"{key} {value}" for key, value in expected.items()), "(all else 0)"
    )
    print("self-test: what the soak found wrong with verify:", *soak.disagreements, sep="\n  ")
    if wrong:
        print("self-test MISSED: the soak's figures are not what was planted:", *wrong, sep="\n  ")
        return SELF_TEST_MISSED
    print(
        "self-test: the soak found exactly the damage planted behind the product's back, although "
        "verify was blinded; it FAILS, as it must"
    )
    return FAILED


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
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="plant damage behind the product's back and blind verify: the soak must fail (exit 1; 3 if it "
        "does not find exactly what was planted)",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    bindir = Path(args.pg_bin) if args.pg_bin else find_bindir()
    mode = (
        f"SELF-TEST (damage is planted after convergence and verify is blinded: the soak must FAIL, "
        f"exit {FAILED})"
        if args.self_test
        else "soak (the oracle must find nothing lost: exit 0)"
    )
    print(f"soak mode: {mode}", flush=True)
    print(f"soak: {args.minutes:g} minutes, seed {seed}, PostgreSQL from {bindir}", flush=True)
    planted: Planted | None = None
    with started(bindir, second_subscriber=True) as sites:
        replicas = [Replica(name, cluster) for name, cluster in sites.subscribers.items()]
        soak = Soak(sites, random.Random(seed), replicas)  # noqa: S311 - which work to do, not a secret
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
        soak.converge()
        if args.self_test:
            if not any(r.attached for r in replicas):  # a short run that attached nothing
                soak.attach(replicas[0])
                soak.converge()
            planted = soak.plant()
        soak.judge(blind=args.self_test)
        for key in MUST_BE_ZERO:  # each printed, 0 included
            soak.ledger[key] += 0
        # Read while the clusters still run; printed last, so that a log cut to its tail (CI's)
        # still holds what went wrong.
        diagnosis = soak.diagnosis() if any(soak.ledger[key] for key in MUST_BE_ZERO) else []
        if diagnosis:
            print("\nthe last operations:", *soak.timeline[-40:], sep="\n  ")
    width = max(len(key) for key in soak.ledger)
    print("\nledger:")
    for key, value in sorted(soak.ledger.items()):
        print(f"  {key.ljust(width)}  {value}")
    if soak.findings:
        print("\nfindings (worth a look):", *soak.findings, sep="\n  ")
    if diagnosis:
        print("\ndiagnosis:", *diagnosis, sep="\n  ")
    bad = [key for key in MUST_BE_ZERO if soak.ledger[key]]
    if args.self_test:
        return _self_test_verdict(soak, planted)
    if bad:
        print(f"\nsoak FAILED (seed {seed}): {', '.join(bad)}")
        return FAILED
    compared = soak.ledger["replicas compared by the oracle"]
    print(
        f"\nsoak passed: the oracle found {compared} replicas on {len(replicas)} Subscribers equal to "
        f"their Leader lists, nothing lost (seed {seed})"
    )
    return PASSED


if __name__ == "__main__":
    sys.exit(main())
