from __future__ import annotations

import pytest

from pgsync_dossier.conninfo import mask_conninfo


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:****@h:5432/db"),
        ("postgres://u@h/db?password=x&sslmode=require", "postgres://u@h/db?password=****&sslmode=require"),
        ("postgresql:///dossiers", "postgresql:///dossiers"),
        ("host=h password='a b\\' c' user=x", "host=h password=**** user=x"),
        ("host=h PASSWORD = plain dbname=d", "host=h PASSWORD = **** dbname=d"),
        ("host=h dbname=d", "host=h dbname=d"),
    ],
)
def test_passwords_are_masked(given: str, shown: str) -> None:
    assert mask_conninfo(given) == shown


def test_unparsable_urls_and_ssl_passwords_stay_hidden() -> None:
    assert mask_conninfo("postgresql://u:secret@[::1/db") == "postgresql://(unparsable URL)"
    assert "pw" not in mask_conninfo("postgresql://h/db?sslpassword=pw")
    assert "pw" not in mask_conninfo("host=h sslpassword=pw")


def test_first_line_keeps_the_servers_words_not_libpqs_boilerplate() -> None:
    from pgsync_dossier.pg import first_line

    closed = (
        "consuming input failed: server closed the connection unexpectedly\n"
        "\tThis probably means the server terminated abnormally\n\tbefore or while processing the request."
    )
    assert first_line(closed) == "consuming input failed: server closed the connection unexpectedly"
    refused = 'connection to server at "127.0.0.1", port 1 failed: FATAL:  password authentication failed'
    assert first_line(refused) == refused  # no line starts with FATAL: the whole line is the reason
    assert first_line("ERROR:  relation x does not exist") == "relation x does not exist"
