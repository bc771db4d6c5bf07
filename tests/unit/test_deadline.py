"""Deadline.not_counting: work a command's deadline must not cut short, with a fake clock."""

from __future__ import annotations

import pytest

from pgsync_dossier.deadline import Deadline


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_work_gets_its_own_time_and_the_waits_after_it_keep_theirs() -> None:
    clock = Clock()
    deadline = Deadline(300, clock)
    clock.now += 100  # 200 s of waiting left
    with deadline.not_counting(3600) as work:
        assert work.remaining() == 3600
        clock.now += 1000  # a repair of a million rows, longer than the waits' deadline
        assert not work.expired() and deadline.expired()
    assert deadline.remaining() == 200  # what was left before the work
    assert deadline.seconds == 300  # messages still name the --timeout asked for


def test_work_never_gets_less_than_the_deadline_it_runs_in() -> None:
    clock = Clock()
    deadline = Deadline(7200, clock)
    with deadline.not_counting(3600) as work:
        assert work.remaining() == 7200


def test_the_time_is_given_back_when_the_work_fails() -> None:
    clock = Clock()
    deadline = Deadline(10, clock)
    with pytest.raises(RuntimeError), deadline.not_counting(60):
        clock.now += 30
        raise RuntimeError("the Leader went away")
    assert deadline.remaining() == 10
