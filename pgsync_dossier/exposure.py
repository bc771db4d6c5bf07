"""What a Subscriber's login could reach on a Leader beyond its own streams; `setup` and
`status` warn about it (a warning with its fix, never a failure).

A Subscriber's login has REPLICATION, as a subscription needs. Two things then widen what it
can read: a pg_hba.conf line that lets it connect for *physical* replication (pg_basebackup
copies the whole cluster, pg_authid included), and tables in the Leader's database other than
the dossier schema (logical decoding of this database shows their changes to any
REPLICATION login that can open a slot through the replication protocol).
"""

from __future__ import annotations

import re

from psycopg.rows import scalar_row

from pgsync_dossier import pg
from pgsync_dossier.leader_install import ENROLL_ROLE, SUBSCRIBER_ROLE

#: The dossier schema's own tables: everything else in the Leader's database is exposed.
DOSSIER_TABLES = ("public.dossier_list", "public.dossier", "public.dossier_face", "public.alembic_version")


def warnings(conn: pg.Connection) -> list[str]:
    return physical_replication_warnings(conn) + foreign_table_warnings(conn) + slot_function_warnings(conn)


def slot_function_warnings(conn: pg.Connection) -> list[str]:
    """`prepare-upgrade` gave the slot SQL functions back to PUBLIC for pg_upgrade; until the
    next `setup` a Subscriber login can read, advance or drop another's slot over SQL."""
    row = conn.execute(pg.query("slot_functions_open", "exposure.sql")).fetchone()
    if not row or not row["open"]:
        return []
    return [
        "the slot SQL functions are open to every login (prepare-upgrade ran): a Subscriber login can "
        "drop or read another's slot over SQL; run pgsync-dossier setup once pg_upgrade is done, or now "
        "if no upgrade follows"
    ]


def physical_replication_warnings(conn: pg.Connection) -> list[str]:
    """pg_hba.conf lines that let pgsync-dossier's logins replicate physically, in the order
    the server reads them (a `reject` line for the same address before them closes them)."""
    rules = conn.execute(pg.query("hba_rules", "exposure.sql")).fetchall()
    logins = [ENROLL_ROLE, "pgsync_s_<tag>"]
    open_lines: list[int] = []
    for login in logins:
        rejected: set[str] = set()
        for rule in rules:
            if "replication" not in (rule["database"] or []) or not _matches(rule["user_name"] or [], login):
                continue
            where = "local" if rule["type"] == "local" else f"{rule['address']}/{rule['netmask']}"
            if rule["auth_method"] == "reject":
                rejected.add(where)
            elif where not in rejected and rule["line_number"] not in open_lines:
                open_lines.append(rule["line_number"])
    if not open_lines:
        return []
    lines = ", ".join(str(n) for n in sorted(open_lines))
    return [
        f"pg_hba.conf line {lines} lets pgsync-dossier's logins replicate physically (pg_basebackup "
        "would copy the whole cluster): put 'host replication "
        f"{ENROLL_ROLE},+{SUBSCRIBER_ROLE} all reject' before it and reload"
    ]


def _matches(users: list[str], login: str) -> bool:
    """Whether a pg_hba user field names this login: by name, `all`, membership of the
    Subscribers' group role, or a regular expression (16+)."""
    for user in users:
        if user in ("all", login) or (user == f"+{SUBSCRIBER_ROLE}" and login != ENROLL_ROLE):
            return True
        if user.startswith("/") and re.search(user[1:], login.replace("<tag>", "0123456789ab")):
            return True
    return False


def foreign_table_warnings(conn: pg.Connection) -> list[str]:
    with conn.cursor(row_factory=scalar_row) as cur:
        tables: list[str] = cur.execute(
            pg.query("foreign_tables", "exposure.sql"), {"dossier": list(DOSSIER_TABLES)}
        ).fetchall()
    if not tables:
        return []
    named = ", ".join(tables[:3]) + (f" and {len(tables) - 3} more" if len(tables) > 3 else "")
    return [
        f"this Leader's database holds tables outside the dossier schema ({named}): a Subscriber's "
        "login (it has REPLICATION) can decode their changes; move them to another database"
    ]
