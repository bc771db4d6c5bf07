"""A Subscriber's own login on each Leader: found, or made by enrolling.

The sync token opens only the Leader's enrollment login, which can do one thing: give this
Subscriber a login of its own (`pgsync_s_<node tag>_<Leader>`, with REPLICATION and the group API,
acting on this Subscriber's streams only). The password is drawn here and only its SCRAM
verifier is sent; it is kept in a file in the Subscriber's data directory (written by the
server itself, see subscriber.write_passfile), which only the server's user and the
orchestrator's superuser login can read. `pgsync.leader_login` says which login goes with
which Leader.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets

from pgsync_dossier import catalog, faults, pg, subscriber
from pgsync_dossier.catalog import Node
from pgsync_dossier.config import Config
from pgsync_dossier.conninfo import has_password
from pgsync_dossier.errors import PreconditionFailed
from pgsync_dossier.leader_client import (
    LeaderClient,
    LeaderFacts,
    Login,
    LoginRefused,
    own_login_name,
    with_tls,
)
from pgsync_dossier.token import Secret, matches_verifier, verifier_check

log = logging.getLogger(__name__)


class Logins:
    """The login a command uses for each Leader, enrolling when this Subscriber has none yet
    (unless `may_enroll` is off: `status` only reads)."""

    def __init__(self, conn: pg.Connection, node: Node, config: Config, *, may_enroll: bool = True) -> None:
        self.conn = conn
        self.node = node
        self.token = config.sync_token
        self.rootcert = config.leader_sslrootcert
        self.may_enroll = may_enroll

    def client(self, url: str) -> LeaderClient:
        """A client for the Leader this URL names (keyed by the URL as given; it connects with
        TLS settings added, and the subscriptions made through it stream with them too)."""
        target = with_tls(url, self.rootcert)
        if has_password(url):  # the URL's own login, as the user asked
            return LeaderClient(target, Login("url"))
        own = self._stored(_leader_id_for_url(self.conn, url))
        if own is not None:
            try:
                return LeaderClient(target, own)
            except LoginRefused:
                pass  # revoked, approved again, or its password lost: ask the Leader why
        return self._enrolled_client(url, target, refused=own)

    def _enrolled_client(self, url: str, target: str, refused: Login | None) -> LeaderClient:
        """Through the enrollment login, one command of this node at a time: commands started
        together on a new Subscriber (a tick and two attaches) would otherwise enroll at once,
        and all but one find the Leader's login active with a password they do not hold."""
        pg.advisory_lock(self.conn, "enrollment", 0)
        try:
            return self._enroll_locked(url, target, refused)
        finally:
            pg.advisory_unlock(self.conn, "enrollment", 0)

    def _enroll_locked(self, url: str, target: str, refused: Login | None) -> LeaderClient:
        tag = self.node.node_tag
        with LeaderClient(target, Login.enrollment(self.token)) as enroller:
            leader_id = enroller.facts().leader_id
            own = self._stored(leader_id)
            state = enroller.enrollment_state(tag)
            # A login refused a moment ago is tried again only if the Leader holds it active:
            # another command of this node may have enrolled it in between (its password is
            # the one stored here), which the lock above has now waited for.
            if own is not None and (own != refused or state == "active"):
                try:
                    client = LeaderClient(target, own)
                except LoginRefused:
                    pass
                else:
                    client.token_proven = True  # the enrollment login just proved it
                    if self.may_enroll:  # (status only reads) the next command goes straight in
                        self.conn.execute(
                            pg.query("set_leader_login_url", "enrollment.sql"),
                            {"leader_id": leader_id, "url": url},
                        )
                    return client
            if state in ("pending", "revoked", "active"):
                raise _refusal(state, self.node.node_name, enroller.shown_url)
            if not self.may_enroll:
                raise PreconditionFailed(
                    f"this Subscriber has no login on the Leader ({enroller.shown_url}) yet: "
                    "the next attach, sync or tick enrolls it",
                    code="not_enrolled",
                )
            password = Secret(secrets.token_urlsafe(32))
            # Kept before the Leader knows it: a crash in between leaves a password that is
            # simply replaced at the next enrollment, never a login nobody can use.
            login = own_login_name(tag, leader_id)
            self._store(leader_id, login, password, url)
            faults.point("enrollment.stored")
            state = enroller.enroll(tag, self.node.node_name, password, login)
            log.info("enrolled on the Leader %s as %s (%s)", enroller.shown_url, login, state)
            if state == "pending":
                raise _refusal(state, self.node.node_name, enroller.shown_url)
        client = LeaderClient(target, Login("own", login, password))
        client.token_proven = True
        self._repoint_streams(leader_id, client)
        return client

    def _stored(self, leader_id: str | None) -> Login | None:
        if leader_id is None:
            return None
        row = self.conn.execute(
            pg.query("leader_login", "enrollment.sql"), {"leader_id": leader_id}
        ).fetchone()
        if row is None or row["login"] != own_login_name(self.node.node_tag, leader_id):
            return None  # a copy of another Subscriber's database: it enrolls as itself
        path = subscriber.passfile_path(self.conn, self._passfile_name(leader_id))
        line = self.conn.execute(pg.query("read_passfile", "enrollment.sql"), {"path": path}).fetchone()
        if line is None or not line["line"]:
            return None
        return Login("own", row["login"], Secret(subscriber.passfile_password(line["line"])))

    def _store(self, leader_id: str, login: str, password: Secret, url: str) -> None:
        subscriber.write_passfile(self.conn, self._passfile_name(leader_id), password)
        self.conn.execute(
            pg.query("store_leader_login", "enrollment.sql"),
            {"leader_id": leader_id, "login": login, "url": url},
        )

    def _passfile_name(self, leader_id: str) -> str:
        """Per node and Leader: a copy of this database on the same server never reads it."""
        return f"pgsync_login_{self.node.node_tag}_" + hashlib.sha256(leader_id.encode()).hexdigest()[:16]

    def _repoint_streams(self, leader_id: str, client: LeaderClient) -> None:
        """Subscriptions made under an earlier login (the shared one of older versions, or a
        login re-enrolled after a revoke) stream with the new one from now on."""
        for group in catalog.groups(self.conn):
            if group.leader_id == leader_id and subscriber.subscription(self.conn, group.name) is not None:
                subscriber.set_connection(self.conn, group.name, client.url, client.login)


def _refusal(state: str, node_name: str, leader: str) -> PreconditionFailed:
    if state == "pending":
        return PreconditionFailed(
            f"the Leader ({leader}) has not approved this Subscriber yet: run "
            f"'pgsync-dossier approve {node_name}' there, then run this again",
            code="enrollment_pending",
        )
    if state == "revoked":
        return PreconditionFailed(
            f"the Leader ({leader}) revoked this Subscriber: 'pgsync-dossier approve {node_name}' "
            "there lets it enroll again",
            code="revoked",
        )
    return PreconditionFailed(
        f"the Leader ({leader}) has a login for this Subscriber whose password is lost here (a "
        f"restored database, say): run 'pgsync-dossier revoke {node_name}' and then "
        f"'pgsync-dossier approve {node_name}' on the Leader, then run this again",
        code="login_lost",
    )


def _leader_id_for_url(conn: pg.Connection, url: str) -> str | None:
    row = conn.execute(pg.query("leader_id_for_url", "enrollment.sql"), {"url": url}).fetchone()
    return None if row is None else str(row["leader_id"])


def same_token(conn: pg.Connection, token: Secret, facts: LeaderFacts, token_proven: bool) -> bool:
    """Whether this node's token is the Leader's. The slow verifier (PBKDF2) is checked once per
    Leader verifier and token: the outcome is kept with the Leader's login as a keyed hash,
    which only the same token reproduces and which tells nothing about it. `token_proven`: the
    Leader already let the enrollment login in with a password made from this token."""
    check = verifier_check(token, facts.token_verifier)
    row = conn.execute(
        pg.query("leader_token_check", "enrollment.sql"), {"leader_id": facts.leader_id}
    ).fetchone()
    if row is not None and row["token_check"] is not None and hmac.compare_digest(row["token_check"], check):
        return True
    if not token_proven and not matches_verifier(token, facts.token_verifier):
        return False
    conn.execute(
        pg.query("set_leader_token_check", "enrollment.sql"), {"leader_id": facts.leader_id, "check": check}
    )
    return True
