"""The sync token and what is derived from it. Pure: no database code.

The token itself never leaves the node. What other nodes see are derivations:
- a salted, slow *verifier* stored in the catalog, so a Subscriber can check that its token is
  the Leader's without either side revealing it;
- the *enrollment password* of the Leader's `pgsync_enroll` login (no REPLICATION: it can only
  ask for a Subscriber login of its own), so that a Subscriber with a different token simply
  fails to authenticate;
- a short *fingerprint* that operators may compare across nodes in logs and status output.
Each derivation uses its own label, so one leaking says nothing about the others.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

MIN_TOKEN_LENGTH = 32
GENERATED_TOKEN_LENGTH = 64
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_PBKDF2_ITERATIONS = 200_000
_VERIFIER_SCHEME = "pbkdf2-sha256"


class Secret:
    """A string that refuses to show itself by accident (repr, str, f-strings, logs)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(fingerprint(self))


def generate_token() -> str:
    """64 random letters and digits: about 380 bits, and safe in YAML, env files and URLs."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(GENERATED_TOKEN_LENGTH))


def token_problem(token: str) -> str | None:
    """Why this string cannot serve as a sync token, or None when it can."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"is {len(token)} characters long; it must have at least {MIN_TOKEN_LENGTH}"
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        return "contains white space or control characters"
    return None


def _derive(token: Secret, label: str) -> str:
    return hmac.new(token.reveal().encode(), label.encode(), hashlib.sha256).hexdigest()


def enrollment_password(token: Secret) -> Secret:
    """Password of the Leader's enrollment login; identical on every node with the same token."""
    return Secret(_derive(token, "pgsync-dossier/enrollment-password/v1"))


def fingerprint(token: Secret) -> str:
    """Eight hex digits that tell tokens apart without revealing them."""
    return _derive(token, "pgsync-dossier/fingerprint/v1")[:8]


def make_verifier(token: Secret, salt: str | None = None) -> str:
    """A salted slow hash of the token, safe to store in a table other nodes can read."""
    salt = salt if salt is not None else secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", token.reveal().encode(), salt.encode(), _PBKDF2_ITERATIONS)
    return f"{_VERIFIER_SCHEME}${_PBKDF2_ITERATIONS}${salt}${digest.hex()}"


def matches_verifier(token: Secret, verifier: str) -> bool:
    """Whether this token is the one the verifier was made from (constant-time comparison)."""
    try:
        scheme, iterations, salt, expected = verifier.split("$")
        rounds = int(iterations)
    except ValueError:
        return False
    if scheme != _VERIFIER_SCHEME:
        return False
    digest = hashlib.pbkdf2_hmac("sha256", token.reveal().encode(), salt.encode(), rounds)
    return hmac.compare_digest(digest.hex(), expected)


def verifier_check(token: Secret, verifier: str) -> str:
    """A keyed hash saying "this token matched this verifier", kept so that the slow check
    runs once: only the same token reproduces it, and it reveals nothing about the token."""
    return _derive(token, "pgsync-dossier/verifier-check/v1\0" + verifier)


def masked(token: Secret) -> str:
    """How a token is shown to people: never the value, only its length and fingerprint."""
    return f"******** ({len(token.reveal())} characters, fingerprint {fingerprint(token)})"
