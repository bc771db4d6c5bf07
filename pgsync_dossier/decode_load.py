"""What the Leader's walsenders spend decoding its WAL: measured per stream where this host can
see it, and estimated for the whole Leader from its WAL and transaction rates.

Every logical walsender reads and decodes all of its database's WAL, published or not, so the
cost grows with the number of streams (docs/relays.md, "Sizing"). The constants below were
measured in a lab (PostgreSQL 15 and 18 alike, within ~20%): a walsender spends about 3.5 ms
per MB of WAL and 81 µs per transaction the Leader commits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pgsync_dossier import pg

#: A walsender's CPU seconds per MB of the Leader's WAL, and per Leader transaction.
SECONDS_PER_MB = 0.0035
SECONDS_PER_TRANSACTION = 0.000081
_TICKS = os.sysconf("SC_CLK_TCK")  # /proc's unit of CPU time


@dataclass(frozen=True)
class DecodeLoad:
    """The Leader's write rates since its statistics began, and what its streams cost."""

    since: datetime
    wal_mb_per_s: float
    transactions_per_s: float
    streams: int

    @property
    def cores_per_stream(self) -> float:
        return self.wal_mb_per_s * SECONDS_PER_MB + self.transactions_per_s * SECONDS_PER_TRANSACTION

    @property
    def cores(self) -> float:
        return self.streams * self.cores_per_stream

    def note(self) -> str:
        """One line for people (status and setup on a Leader or a relay)."""
        return (
            f"decoding: this database writes {self.wal_mb_per_s:.2f} MB/s of WAL in "
            f"{self.transactions_per_s:.0f} transactions/s (since {self.since:%Y-%m-%d %H:%M}); each of "
            f"its {self.streams} streams decodes all of it, about {self.cores_per_stream:.3f} cores each, "
            f"{self.cores:.2f} in all, at most (3.5 ms per MB + 81 µs per transaction per stream, "
            "read-only transactions counted too; relays cut it: docs/relays.md)"
        )


def measure(conn: pg.Connection) -> DecodeLoad:
    row = conn.execute(pg.query("decode_load", "decode_load.sql")).fetchone()
    assert row is not None
    seconds = max(float(row["seconds"]), 1.0)
    return DecodeLoad(
        since=row["since"],
        wal_mb_per_s=float(row["wal_bytes"]) / 1e6 / seconds,
        transactions_per_s=float(row["transactions"] or 0) / seconds,
        streams=int(row["streams"]),
    )


def walsender_cpu_seconds(pid: int | None) -> float | None:
    """The CPU a stream's walsender has used since it started, where this host runs it: the
    process must be a walsender (a status run on another host reads None, not a stranger)."""
    if pid is None:
        return None
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if b"walsender" not in title:
        return None
    return round((int(fields[11]) + int(fields[12])) / _TICKS, 2)  # utime, stime
