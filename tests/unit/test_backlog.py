"""backlog.py: the choice between replaying a backlog and repairing in place."""

from __future__ import annotations

import math

from pgsync_dossier import backlog

MB = 1024 * 1024


def test_a_small_backlog_is_never_weighed() -> None:
    assert not backlog.worth_estimating(None)
    assert not backlog.worth_estimating(backlog.MIN_BACKLOG_BYTES - 1)
    assert backlog.worth_estimating(backlog.MIN_BACKLOG_BYTES)


def test_the_bound_is_the_backlog_against_the_lists() -> None:
    lists = 1000 * MB
    at_bound = int(backlog.REPAIR_ABOVE * lists)
    assert not backlog.choose(at_bound, lists).repair
    assert backlog.choose(at_bound + 1, lists).repair
    assert backlog.choose(10 * MB, 0).repair  # empty lists: nothing to replay into


def test_the_note_says_what_was_chosen_and_why() -> None:
    repaired = backlog.choose(900 * MB, 1000 * MB).note
    assert "900 MB" in repaired and "1,000 MB" in repaired and "repaired in place" in repaired
    assert backlog.choose(100 * MB, 1000 * MB).note.endswith("replayed")


def test_an_unbounded_replay_names_the_setting_that_asked_for_it() -> None:
    note = backlog.choose(500 * MB, 100 * MB, bound=math.inf).note
    assert note.endswith(f"({backlog.REPAIR_ABOVE_ENV}=inf): replayed"), note
