from __future__ import annotations

from pgsync_dossier import token as tk


def test_generated_tokens_are_long_random_and_valid() -> None:
    first, second = tk.generate_token(), tk.generate_token()
    assert len(first) == 64 and first != second and first.isalnum()
    assert tk.token_problem(first) is None


def test_short_or_spaced_tokens_are_rejected() -> None:
    assert "at least 32" in (tk.token_problem("x" * 31) or "")
    assert "white space" in (tk.token_problem("x" * 20 + " " + "y" * 20) or "")


def test_secret_never_shows_itself() -> None:
    secret = tk.Secret("s3cret-" * 6)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", tk.masked(secret)):
        assert "s3cret" not in shown
    assert secret == tk.Secret("s3cret-" * 6) and secret != tk.Secret("other-" * 7)


def test_verifier_checks_the_token_without_containing_it() -> None:
    secret = tk.Secret(tk.generate_token())
    verifier = tk.make_verifier(secret)
    assert secret.reveal() not in verifier
    assert tk.matches_verifier(secret, verifier)
    assert not tk.matches_verifier(tk.Secret(tk.generate_token()), verifier)
    assert not tk.matches_verifier(secret, "garbage")
    assert tk.make_verifier(secret) != verifier  # salted


def test_derivations_are_stable_and_distinct() -> None:
    secret = tk.Secret("a" * 40)
    password = tk.enrollment_password(secret).reveal()
    assert password == tk.enrollment_password(tk.Secret("a" * 40)).reveal()
    assert password != tk.enrollment_password(tk.Secret("b" * 40)).reveal()
    assert tk.fingerprint(secret) not in password and len(tk.fingerprint(secret)) == 8
