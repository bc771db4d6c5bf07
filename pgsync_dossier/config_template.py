"""The commented config file that init-config writes. Pure: no database code."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pgsync_dossier.errors import PreconditionFailed, UsageError
from pgsync_dossier.token import Secret, generate_token

TEMPLATE = """\
# pgsync-dossier node configuration ({role}).
# Reference: docs/configuration.md. Validate with: pgsync-dossier --config {path} config check

# leader: dossier lists are edited here. subscriber: holds read-only replicas of Leader lists.
# relay: a subscriber whose replicas further Subscribers attach as they would the Leader's
# (its replica lists keep the Leader's list ids; docs/relays.md). Settings marked Leader or
# Subscriber below apply to a relay too.
role: {role}

# This node's name, shown on the other side (status, slots). Unique among your sites.
node_name: {node_name}

# The dossier database (libpq URL or key=value string). PG* variables, ~/.pgpass and
# pg_service.conf work as for psql; prefer them to a password written here.
database_url: "{database_url}"

# Shared secret, identical on the Leader and every Subscriber (at least 32 characters).
# Keep this file private (mode 0600), or use sync_token_file, or the environment variable
# PGSYNC_DOSSIER_SYNC_TOKEN, which overrides both.
sync_token: "{token}"
# sync_token_file: /etc/pgsync-dossier/sync_token

# The face model (neural network) that made the embeddings: identical on every node.
face_model: "{face_model}"

# When to sync (an RRULE). Absent: continuous replication. The Leader's value is authoritative.
#   nightly at 03:00:        FREQ=DAILY;BYHOUR=3
#   every 15 minutes:        FREQ=MINUTELY;INTERVAL=15
#   weekdays at 03:00:       FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=3
#   with a zone:             "DTSTART;TZID=Europe/Paris:20240101T030000\\nRRULE:FREQ=DAILY"
# sync_schedule: "FREQ=DAILY;BYHOUR=3"

# Sync every link when the service starts or restarts.
sync_at_startup: true
# Sync a list right after its replication is set up (attach waits for the initial copy).
sync_at_creation: true

# Subscriber: serve the small web page at / with `pgsync-dossier serve` (the API is always on).
web_ui: false

# Subscriber: when each replica proves it equals its Leader list (an RRULE; 'none': only when
# asked with `verify`). The default is once a day at 04:15. `tick` (or `run`) verifies one
# group at a time, after its sync.
# verify_schedule: "FREQ=DAILY;BYHOUR=4;BYMINUTE=15"
# Subscriber: a scheduled verification that finds differences repairs them in place at once
# and verifies again; false only reports them (status, /metrics, the alert).
# repair_on_divergence: true

# Subscriber: when a Leader sets no max_slot_wal_keep_size, status warns once a closed
# window's slot holds more than 80% of this much WAL (e.g. 10GB).
# wal_retention_budget: 10GB

# Leader: the PostgreSQL URL Subscribers stream from, when it is not database_url (a name
# they can resolve, a multi-host URL). `serve` hands it to Subscribers given the web address.
# No user or password here: Subscribers log in with the token.
# replication_url: "postgresql://leader.example.org:5432/dossiers"

# Leader: 'manual' makes each new Subscriber wait for `pgsync-dossier approve NODE` before it
# gets its login; 'auto' lets any node with the sync token enroll.
# enrollment: auto
"""


def render_template(
    *,
    role: str,
    path: Path,
    node_name: str | None = None,
    database_url: str | None = None,
    face_model: str | None = None,
    token: Secret | None = None,
) -> str:
    for name, value in (("node name", node_name), ("database URL", database_url), ("face model", face_model)):
        if value is not None and ('"' in value or "\\" in value or "\n" in value):
            raise UsageError(f"the {name} may not contain quotes, backslashes or line breaks")
    return TEMPLATE.format(
        role=role,
        path=path,
        node_name=node_name or socket.gethostname().split(".")[0] or role,
        database_url=database_url or "postgresql:///dossiers",
        face_model=face_model or "face-model-v1",
        token=token.reveal() if token else generate_token(),
    )


def write_template(
    path: Path,
    *,
    role: str,
    force: bool = False,
    node_name: str | None = None,
    database_url: str | None = None,
    face_model: str | None = None,
    token: Secret | None = None,
) -> None:
    """Write the template readable by its owner only; refuse to overwrite unless forced."""
    text = render_template(
        role=role,
        path=path,
        node_name=node_name,
        database_url=database_url,
        face_model=face_model,
        token=token,
    )
    if path.exists() and not force:
        raise PreconditionFailed(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise UsageError(f"directory {path.parent} does not exist; create it first")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(fd, 0o600)
        out.write(text)
