"""Schedule logic against fixed clocks: every `now` is a literal datetime, nothing sleeps."""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import pairwise

import pytest
from dateutil import rrule as dateutil_rrule
from dateutil import tz

from pgsync_dossier.schedule import Schedule


def zone(name: str) -> tzinfo:
    found = tz.gettz(name)
    assert found is not None
    return found


PARIS = zone("Europe/Paris")
NEW_YORK = zone("America/New_York")


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=PARIS)


def ny(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0, fold: int = 0
) -> datetime:
    """fold=1 picks the second of the two 01:xx of a fall-back night."""
    return datetime(year, month, day, hour, minute, sec, tzinfo=NEW_YORK, fold=fold)


def utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def following(schedule: Schedule, moment: datetime, n: int) -> list[datetime]:
    found: list[datetime] = []
    for _ in range(n):
        nxt = schedule.next_after(moment)
        if nxt is None:
            break
        found.append(nxt)
        moment = nxt
    return found


def gaps(moments: list[datetime]) -> list[timedelta]:
    """Elapsed time: datetimes of one zone subtract by wall clock, so go through UTC."""
    instants = [moment.astimezone(UTC) for moment in moments]
    return [later - earlier for earlier, later in pairwise(instants)]


def local(moments: list[datetime]) -> list[str]:
    """Wall clock with offset: what an operator reads in the log."""
    return [moment.isoformat() for moment in moments]


# --- the everyday rules ------------------------------------------------------------------------


def test_nightly_at_three() -> None:
    schedule = Schedule.parse("RRULE:FREQ=DAILY;BYHOUR=3", PARIS)
    assert schedule.next_after(paris(2024, 5, 1, 12, 0)) == paris(2024, 5, 2, 3, 0)
    assert schedule.next_after(paris(2024, 5, 2, 3, 0)) == paris(2024, 5, 3, 3, 0)  # strictly after
    assert schedule.latest_at_or_before(paris(2024, 5, 2, 3, 0)) == paris(2024, 5, 2, 3, 0)
    assert schedule.latest_at_or_before(paris(2024, 5, 2, 2, 59, 59)) == paris(2024, 5, 1, 3, 0)
    assert schedule.due(paris(2024, 5, 1, 3, 0), paris(2024, 5, 1, 23, 0)) is None
    assert schedule.due(paris(2024, 5, 1, 3, 0), paris(2024, 5, 2, 3, 0, 1)) == paris(2024, 5, 2, 3)
    assert not schedule.is_finished(paris(2030, 1, 1, 0, 0))


def test_bare_rule_same_as_rrule_line() -> None:
    bare = Schedule.parse("  FREQ=DAILY;BYHOUR=3\n", PARIS)
    line = Schedule.parse("RRULE:FREQ=DAILY;BYHOUR=3", PARIS)
    assert bare.text == "FREQ=DAILY;BYHOUR=3"
    moment = paris(2024, 7, 14, 9, 0)
    assert following(bare, moment, 5) == following(line, moment, 5)


def test_case_does_not_matter_except_in_zone_names() -> None:
    schedule = Schedule.parse("dtstart;tzid=Europe/Paris:20240101t030000\nrrule:freq=daily", NEW_YORK)
    assert schedule.next_after(paris(2024, 2, 1, 12)) == paris(2024, 2, 2, 3, 0)


def test_several_rules_are_merged() -> None:
    text = "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=3\nRRULE:FREQ=WEEKLY;BYDAY=SA,SU;BYHOUR=12"
    schedule = Schedule.parse(text, PARIS)
    assert local(following(schedule, paris(2024, 6, 7, 12), 4)) == [
        "2024-06-08T12:00:00+02:00",
        "2024-06-09T12:00:00+02:00",
        "2024-06-10T03:00:00+02:00",
        "2024-06-11T03:00:00+02:00",
    ]
    assert schedule.due(paris(2024, 6, 7, 3), paris(2024, 6, 10, 2)) == paris(2024, 6, 9, 12)


def test_minutes_and_seconds_default_to_zero_without_dtstart() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=3", PARIS)
    found = schedule.next_after(paris(2027, 2, 3, 4, 5, 6))
    assert found == paris(2027, 2, 4, 3, 0, 0)


def test_every_fifteen_minutes() -> None:
    schedule = Schedule.parse("FREQ=MINUTELY;INTERVAL=15", PARIS)
    assert local(following(schedule, paris(2024, 5, 2, 10, 7, 30), 4)) == [
        "2024-05-02T10:15:00+02:00",
        "2024-05-02T10:30:00+02:00",
        "2024-05-02T10:45:00+02:00",
        "2024-05-02T11:00:00+02:00",
    ]
    assert schedule.next_after(paris(2024, 5, 2, 10, 15)) == paris(2024, 5, 2, 10, 30)
    assert schedule.latest_at_or_before(paris(2024, 5, 2, 10, 29, 59)) == paris(2024, 5, 2, 10, 15)


def test_weekdays_only() -> None:
    schedule = Schedule.parse("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=3", PARIS)
    friday, monday = paris(2024, 6, 7, 3, 0), paris(2024, 6, 10, 3, 0)
    assert schedule.next_after(paris(2024, 6, 7, 3, 0)) == monday
    assert schedule.latest_at_or_before(paris(2024, 6, 9, 23, 0)) == friday
    # A weekend without a window: nothing is due until Monday 03:00.
    assert schedule.due(friday, paris(2024, 6, 9, 23, 0)) is None
    assert schedule.due(friday, paris(2024, 6, 10, 3, 0)) == monday
    week = following(schedule, paris(2024, 6, 9, 0, 0), 6)
    assert [moment.strftime("%a") for moment in week] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Mon"]


def test_without_dtstart_the_anchor_is_fixed() -> None:
    """Monday 2024-01-01 00:00 local: the same windows whenever the process starts."""
    every_other_day = Schedule.parse("FREQ=DAILY;INTERVAL=2", PARIS)
    assert every_other_day.latest_at_or_before(paris(2024, 1, 4, 12)) == paris(2024, 1, 3, 0, 0)
    assert every_other_day.next_after(paris(2024, 3, 1, 0, 0)) == paris(2024, 3, 3, 0, 0)
    weekly = Schedule.parse("FREQ=WEEKLY", PARIS)
    assert weekly.next_after(paris(2026, 7, 15, 12)) == paris(2026, 7, 20, 0, 0)  # a Monday
    seven = Schedule.parse("FREQ=MINUTELY;INTERVAL=7", PARIS)
    # 1440 is not a multiple of 7: the lattice runs on from 2024-01-01 00:00, not from midnight.
    assert seven.next_after(paris(2024, 1, 2, 0, 0)) == paris(2024, 1, 2, 0, 2)
    monthly = Schedule.parse("FREQ=MONTHLY", PARIS)
    assert monthly.next_after(paris(2024, 2, 15)) == paris(2024, 3, 1, 0, 0)


def test_default_tz_none_is_the_machine_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        schedule = Schedule.parse("FREQ=DAILY;BYHOUR=3")
        # tzlocal asks the process for DST rules on every call: convert while TZ is set.
        found = utc(schedule.next_after(datetime(2024, 7, 1, 12, tzinfo=UTC)))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert found == datetime(2024, 7, 2, 7, 0, tzinfo=UTC)  # 03:00 EDT


# --- DTSTART forms ----------------------------------------------------------------------------


def test_dtstart_with_tzid_sets_the_rule_zone() -> None:
    text = "DTSTART;TZID=Europe/Paris:20240101T030000\nRRULE:FREQ=DAILY"
    schedule = Schedule.parse(text, NEW_YORK)
    found = schedule.next_after(datetime(2024, 6, 1, 12, tzinfo=UTC))
    assert found == paris(2024, 6, 2, 3, 0)
    assert found is not None and found.tzinfo is PARIS
    assert schedule.latest_at_or_before(paris(2024, 1, 1, 2, 59)) is None  # before DTSTART


def test_dtstart_in_utc() -> None:
    schedule = Schedule.parse("DTSTART:20240101T030000Z\nRRULE:FREQ=DAILY", PARIS)
    found = schedule.next_after(paris(2024, 7, 1, 12, 0))
    assert found == datetime(2024, 7, 2, 3, 0, tzinfo=UTC)
    assert found is not None and found.utcoffset() == timedelta(0)


def test_naive_dtstart_is_in_default_tz() -> None:
    text = "DTSTART:20240101T023000\r\n\r\nRRULE:FREQ=DAILY"
    schedule = Schedule.parse(text, NEW_YORK)
    assert schedule.next_after(ny(2024, 7, 1, 12, 0)) == ny(2024, 7, 2, 2, 30)


def test_dtstart_time_gives_the_default_time_of_day() -> None:
    schedule = Schedule.parse("DTSTART:20240105T221500\nRRULE:FREQ=WEEKLY", PARIS)
    assert schedule.next_after(paris(2024, 1, 6)) == paris(2024, 1, 12, 22, 15)  # Fridays


def test_dtstart_later_in_the_text_still_applies() -> None:
    schedule = Schedule.parse("RRULE:FREQ=DAILY\nDTSTART:20240101T041500Z", PARIS)
    assert schedule.next_after(datetime(2024, 3, 1, tzinfo=UTC)) == datetime(2024, 3, 1, 4, 15, tzinfo=UTC)


# --- DST ---------------------------------------------------------------------------------------


def test_paris_spring_forward_keeps_the_0230_window() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", PARIS)
    nights = following(schedule, paris(2024, 3, 29, 12, 0), 4)
    assert local(nights) == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:30:00+02:00",  # 02:30 does not exist: moved forward by the gap
        "2024-04-01T02:30:00+02:00",
        "2024-04-02T02:30:00+02:00",
    ]
    assert gaps(nights)[0] == timedelta(hours=24)
    assert schedule.due(nights[0], paris(2024, 3, 31, 4, 0)) == nights[1]


def test_paris_fall_back_runs_0230_once() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", PARIS)
    nights = following(schedule, paris(2024, 10, 26, 12, 0), 2)
    assert local(nights) == ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"]
    second_0230 = datetime(2024, 10, 27, 1, 30, tzinfo=UTC)  # 02:30 CET, one hour later
    assert schedule.due(nights[0], second_0230) is None


def test_paris_daily_three_oclock_stays_local() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=3", PARIS)
    spring = following(schedule, paris(2024, 3, 29, 12, 0), 3)
    fall = following(schedule, paris(2024, 10, 25, 12, 0), 3)
    assert [(m.hour, m.minute) for m in spring + fall] == [(3, 0)] * 6
    assert gaps(spring) == [
        timedelta(hours=23),  # the night of Sunday 31 March is an hour short
        timedelta(hours=24),
    ]
    assert gaps(fall) == [
        timedelta(hours=25),  # and the night of Sunday 27 October an hour long
        timedelta(hours=24),
    ]


def test_new_york_spring_forward() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", NEW_YORK)
    assert schedule.next_after(ny(2024, 3, 9, 12, 0)) == ny(2024, 3, 10, 3, 30)
    every15 = Schedule.parse("FREQ=MINUTELY;INTERVAL=15", NEW_YORK)
    assert local(following(every15, ny(2024, 3, 10, 1, 30), 4)) == [
        "2024-03-10T01:45:00-05:00",
        "2024-03-10T03:00:00-04:00",  # 02:00..02:45 fall onto 03:00..03:45, each only once
        "2024-03-10T03:15:00-04:00",
        "2024-03-10T03:30:00-04:00",
    ]
    assert every15.latest_at_or_before(ny(2024, 3, 10, 3, 40)) == ny(2024, 3, 10, 3, 30)


def test_new_york_fall_back_runs_0130_once() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=1;BYMINUTE=30", NEW_YORK)
    nights = following(schedule, ny(2024, 11, 2, 12, 0), 2)
    assert local(nights) == ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]
    second_0130 = ny(2024, 11, 3, 1, 30, fold=1)
    assert utc(second_0130) == datetime(2024, 11, 3, 6, 30, tzinfo=UTC)
    assert schedule.latest_at_or_before(second_0130) == nights[0]
    assert schedule.due(nights[0], second_0130) is None
    assert schedule.due(nights[0], ny(2024, 11, 3, 23, 0)) is None


def test_new_york_hourly_across_fall_back() -> None:
    schedule = Schedule.parse("FREQ=HOURLY", NEW_YORK)
    assert local(following(schedule, ny(2024, 11, 3, 0, 30), 3)) == [
        "2024-11-03T01:00:00-04:00",
        "2024-11-03T02:00:00-05:00",  # wall-clock rule: the repeated 01:00 is not a new window
        "2024-11-03T03:00:00-05:00",
    ]
    inside_repeat = ny(2024, 11, 3, 1, 40, fold=1)
    assert schedule.latest_at_or_before(inside_repeat) == ny(2024, 11, 3, 1, 0)
    assert schedule.next_after(inside_repeat) == ny(2024, 11, 3, 2, 0)


# --- COUNT and UNTIL ---------------------------------------------------------------------------


def test_count() -> None:
    schedule = Schedule.parse("DTSTART:20240101T030000Z\nRRULE:FREQ=DAILY;COUNT=3", PARIS)
    last = datetime(2024, 1, 3, 3, 0, tzinfo=UTC)
    before = datetime(2024, 1, 1, 0, 0, tzinfo=UTC)
    assert following(schedule, before, 10) == [
        datetime(2024, 1, 1, 3, tzinfo=UTC),
        datetime(2024, 1, 2, 3, tzinfo=UTC),
        last,
    ]
    later = datetime(2025, 1, 1, tzinfo=UTC)
    assert schedule.next_after(last) is None
    assert schedule.is_finished(last)
    assert not schedule.is_finished(last - timedelta(seconds=1))
    assert schedule.due(datetime(2024, 1, 2, 3, tzinfo=UTC), later) == last
    assert schedule.due(last, later) is None
    assert schedule.due(None, later) == last
    assert schedule.latest_at_or_before(later) == last


def test_count_without_dtstart_counts_from_the_fixed_anchor() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=3;COUNT=3", PARIS)
    assert schedule.latest_at_or_before(paris(2030, 1, 1)) == paris(2024, 1, 3, 3, 0)
    assert schedule.is_finished(paris(2024, 1, 3, 3, 0))


def test_until_in_utc_is_inclusive() -> None:
    text = (
        "DTSTART;TZID=Europe/Paris:20240101T030000\n"
        "RRULE:FREQ=DAILY;UNTIL=20240105T020000Z"  # 03:00 Paris on the 5th
    )
    schedule = Schedule.parse(text, NEW_YORK)
    last = paris(2024, 1, 5, 3, 0)
    assert schedule.latest_at_or_before(paris(2024, 2, 1)) == last
    assert schedule.next_after(paris(2024, 1, 4, 12)) == last
    assert schedule.next_after(last) is None
    assert schedule.is_finished(paris(2024, 1, 5, 3, 0))
    assert not schedule.is_finished(paris(2024, 1, 5, 2, 59))
    assert schedule.due(paris(2024, 1, 3, 3, 0), paris(2030, 1, 1)) == last


def test_until_as_a_date_includes_that_day() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=3;UNTIL=20240131", PARIS)
    assert schedule.latest_at_or_before(paris(2024, 6, 1)) == paris(2024, 1, 31, 3, 0)
    assert schedule.is_finished(paris(2024, 1, 31, 3, 0))


def test_naive_until_is_in_the_rule_zone() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=3;UNTIL=20240110T030000", PARIS)
    assert schedule.latest_at_or_before(paris(2024, 6, 1)) == paris(2024, 1, 10, 3, 0)


def test_rule_finished_long_ago_is_answered_without_replaying_it() -> None:
    schedule = Schedule.parse("FREQ=MINUTELY;INTERVAL=5;UNTIL=20240301T000000Z", PARIS)
    late = paris(2031, 1, 1)
    with counted_iterations() as iterations:
        assert schedule.latest_at_or_before(late) == datetime(2024, 3, 1, tzinfo=UTC)
        assert schedule.next_after(late) is None
        assert schedule.is_finished(late)
    assert iterations[0] < 100


# --- due(): coalescing -------------------------------------------------------------------------


def test_missed_windows_are_coalesced() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=3", PARIS)
    monday = paris(2024, 6, 3, 3, 0)
    thursday_noon = paris(2024, 6, 6, 12, 0)
    assert schedule.due(monday, thursday_noon) == paris(2024, 6, 6, 3, 0)  # one, the latest
    # Once that one has run, the three missed nights are not replayed.
    assert schedule.due(paris(2024, 6, 6, 3, 0), thursday_noon) is None


def test_missed_fifteen_minute_windows_are_coalesced() -> None:
    schedule = Schedule.parse("FREQ=MINUTELY;INTERVAL=15", NEW_YORK)
    assert schedule.due(ny(2024, 1, 1, 0, 0), ny(2024, 2, 1, 10, 44)) == ny(2024, 2, 1, 10, 30)


def test_last_window_exactly_at_an_occurrence_is_not_due_again() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=3", PARIS)
    window = paris(2024, 6, 3, 3, 0)
    assert schedule.due(window, window) is None
    assert schedule.due(window, paris(2024, 6, 4, 2, 59, 59)) is None
    assert schedule.due(window, paris(2024, 6, 4, 3, 0)) == paris(2024, 6, 4, 3, 0)
    # The same instant written in another zone is the same window.
    assert schedule.due(window.astimezone(UTC), paris(2024, 6, 3, 23, 0)) is None


def test_never_synced() -> None:
    schedule = Schedule.parse("DTSTART;TZID=Europe/Paris:20240601T030000\nRRULE:FREQ=DAILY", PARIS)
    assert schedule.due(None, paris(2024, 6, 1, 2, 0)) is None  # no window yet
    assert schedule.due(None, paris(2024, 6, 1, 3, 0)) == paris(2024, 6, 1, 3, 0)
    assert schedule.due(None, paris(2024, 6, 9, 8, 0)) == paris(2024, 6, 9, 3, 0)


def test_last_window_after_now_means_nothing_due() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=3", PARIS)
    assert schedule.due(paris(2024, 6, 9, 3, 0), paris(2024, 6, 8, 12, 0)) is None


# --- RDATE / EXDATE ----------------------------------------------------------------------------


def test_exdate_and_rdate() -> None:
    text = "\n".join(
        [
            "DTSTART;TZID=Europe/Paris:20240101T030000",
            "RRULE:FREQ=DAILY",
            "EXDATE;TZID=Europe/Paris:20240103T030000,20240104T030000",
            "RDATE:20240103T120000Z",
        ]
    )
    schedule = Schedule.parse(text, NEW_YORK)
    assert local(following(schedule, paris(2024, 1, 2, 12), 3)) == [
        "2024-01-03T13:00:00+01:00",
        "2024-01-05T03:00:00+01:00",
        "2024-01-06T03:00:00+01:00",
    ]
    assert schedule.latest_at_or_before(paris(2024, 1, 4, 23)) == paris(2024, 1, 3, 13, 0)
    assert schedule.due(paris(2024, 1, 2, 3), paris(2024, 1, 3, 12)) is None


def test_only_rdates() -> None:
    schedule = Schedule.parse("RDATE:20240301T010000Z,20240201T010000Z", PARIS)
    assert schedule.next_after(paris(2024, 1, 1)) == datetime(2024, 2, 1, 1, tzinfo=UTC)
    assert schedule.is_finished(datetime(2024, 3, 1, 1, tzinfo=UTC))


# --- rejected input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "the schedule is empty"),
        ("   \n  ", "the schedule is empty"),
        ("garbage", "not a recurrence rule: 'garbage'"),
        ("hello: world", "unsupported line 'HELLO'"),
        ("FREQ", "not a recurrence rule: 'FREQ'"),
        ("BYHOUR=3", "FREQ is missing"),
        ("RRULE:BYDAY=MO", "FREQ is missing"),
        ("DTSTART:20240101T000000Z", "RRULE is missing"),
        ("FREQ=FORTNIGHTLY", "unknown FREQ 'FORTNIGHTLY'"),
        ("FREQ=SECONDLY", "sync windows closer than a minute are not supported"),
        ("FREQ=MINUTELY;BYSECOND=0,30", "sync windows closer than a minute are not supported"),
        ("FREQ=DAILY;COUNT=0", "COUNT must be a positive integer, got '0'"),
        ("FREQ=DAILY;COUNT=-2", "COUNT must be a positive integer, got '-2'"),
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL must be a positive integer, got '0'"),
        ("FREQ=DAILY;COUNT=1000001", "COUNT above 100000 is not supported, use UNTIL"),
        ("FREQ=DAILY;COUNT=2;UNTIL=20250101T000000Z", "COUNT and UNTIL cannot both be given"),
        ("FREQ=DAILY;FREQ=WEEKLY", "FREQ is given twice"),
        ("FREQ=DAILY;BYHOUR=24", "BYHOUR value 24 is out of range"),
        ("FREQ=DAILY;BYHOUR=three", "BYHOUR must be a list of integers, got 'THREE'"),
        ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY value 0 is out of range"),
        ("FREQ=WEEKLY;BYDAY=MO,XX", "invalid BYDAY 'XX'"),
        ("FREQ=WEEKLY;WKST=XX", "invalid WKST 'XX'"),
        ("FREQ=DAILY;BYFOO=1", "unknown rule part 'BYFOO'"),
        ("FREQ=DAILY;BYHOUR", "malformed rule part 'BYHOUR'"),
        ("DTSTART;TZID=Mars/Base:20240101T030000\nRRULE:FREQ=DAILY", "unknown TZID 'Mars/Base'"),
        ("DTSTART;TZID=/etc/passwd:20240101T030000\nRRULE:FREQ=DAILY", "unknown TZID"),
        ("DTSTART;TZID=../../etc/localtime:20240101T030000\nRRULE:FREQ=DAILY", "unknown TZID"),
        ("DTSTART;TZID=FOO3:20240101T030000\nRRULE:FREQ=DAILY", "unknown TZID 'FOO3'"),
        (
            "DTSTART;TZID=Europe/Paris:20240101T030000Z\nRRULE:FREQ=DAILY",
            "DTSTART cannot have both TZID and a Z suffix",
        ),
        ("DTSTART:2024-01-01\nRRULE:FREQ=DAILY", "invalid DTSTART '2024-01-01'"),
        ("DTSTART:20241301T000000\nRRULE:FREQ=DAILY", "invalid DTSTART '20241301T000000'"),
        (
            "DTSTART:20240101T000000Z\nDTSTART:20240101T000000Z\nFREQ=DAILY",
            "DTSTART is given twice",
        ),
        (
            "DTSTART:20240101T030000Z\nRRULE:FREQ=DAILY;UNTIL=20231231T000000Z",
            "UNTIL must be after DTSTART",
        ),
        ("FREQ=DAILY;UNTIL=20231231T000000Z", "UNTIL must be after 2024-01-01"),
        ("FREQ=DAILY;UNTIL=tomorrow", "invalid UNTIL 'TOMORROW'"),
        ("EXRULE:FREQ=DAILY", "unsupported line 'EXRULE'"),
        ("RRULE;X=1:FREQ=DAILY", "unsupported parameter 'X=1' on RRULE"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "the rule has no occurrence"),
        ("FREQ=MONTHLY;BYMONTH=4,6;BYMONTHDAY=31", "the rule has no occurrence"),
        ("FREQ=HOURLY;INTERVAL=2;BYHOUR=1,3", "the rule has no occurrence"),
        ("FREQ=DAILY;BYHOUR=3;UNTIL=20240101T010000", "the rule has no occurrence"),
        (
            "DTSTART:20240101T030000Z\nRRULE:FREQ=DAILY;COUNT=1\nEXDATE:20240101T030000Z",
            "the rule has no occurrence",
        ),
    ],
)
def test_rejected(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        Schedule.parse(text, PARIS)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message and "dateutil" not in message and "Traceback" not in message


@pytest.mark.parametrize("method", ["next_after", "latest_at_or_before", "due", "is_finished"])
def test_naive_datetimes_are_rejected(method: str) -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=3", PARIS)
    naive = datetime(2024, 6, 1, 12, 0)
    call = getattr(schedule, method)
    args = (None, naive) if method == "due" else (naive,)
    with pytest.raises(ValueError, match="naive datetime"):
        call(*args)
    with pytest.raises(TypeError):
        call(*[None if arg is None else "2024-06-01" for arg in args])


def test_naive_last_window_is_rejected() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=3", PARIS)
    with pytest.raises(ValueError, match="naive datetime"):
        schedule.due(datetime(2024, 6, 1, 3, 0), paris(2024, 6, 2, 12, 0))


# --- speed, counted rather than timed ----------------------------------------------------------


@contextmanager
def counted_iterations() -> Iterator[list[int]]:
    """Count the occurrences dateutil generates, whatever rrule objects the module builds."""
    count = [0]
    original = dateutil_rrule.rrule._iter  # type: ignore[attr-defined]

    def counting(rule: dateutil_rrule.rrule) -> Iterator[datetime]:
        for found in original(rule):
            count[0] += 1
            yield found

    dateutil_rrule.rrule._iter = counting  # type: ignore[attr-defined]
    try:
        yield count
    finally:
        dateutil_rrule.rrule._iter = original  # type: ignore[attr-defined]


def test_queries_years_after_the_anchor_stay_bounded() -> None:
    schedule = Schedule.parse("FREQ=MINUTELY;INTERVAL=5", PARIS)
    now = paris(2030, 6, 15, 12, 34, 56)
    with counted_iterations() as iterations:
        assert schedule.next_after(now) == paris(2030, 6, 15, 12, 35)
        assert schedule.latest_at_or_before(now) == paris(2030, 6, 15, 12, 30)
        assert schedule.due(paris(2029, 1, 1), now) == paris(2030, 6, 15, 12, 30)
        assert schedule.due(None, now) == paris(2030, 6, 15, 12, 30)
        assert not schedule.is_finished(now)
    # From 2024-01-01 that would be about 680,000 occurrences per query.
    assert iterations[0] < 100


def test_queries_on_a_dst_night_years_later_stay_bounded() -> None:
    schedule = Schedule.parse("FREQ=MINUTELY", NEW_YORK)
    now = ny(2031, 11, 2, 1, 30, fold=1)
    with counted_iterations() as iterations:
        assert schedule.next_after(now) == ny(2031, 11, 2, 2, 0)
        assert schedule.due(None, now) == ny(2031, 11, 2, 1, 59)
    assert iterations[0] < 2000


# --- re-anchoring yields what iterating from DTSTART yields -----------------------------------


def reference(text: str, default: tzinfo, until: datetime) -> list[datetime]:
    """Occurrences the slow, obvious way: dateutil from DTSTART, mapped as RFC 5545 says."""
    lines = text.split("\n")
    start, rule_zone = datetime(2024, 1, 1), default
    if lines[0].startswith("DTSTART"):
        head, _, value = lines.pop(0).partition(":")
        start = datetime.strptime(value, "%Y%m%dT%H%M%S")
        if "TZID=" in head:
            rule_zone = zone(head.split("TZID=")[1])
    rule = dateutil_rrule.rrulestr(lines[0], dtstart=start)
    found = set()
    for wall in rule:
        if wall > until:
            break
        found.add(tz.resolve_imaginary(wall.replace(tzinfo=rule_zone)).astimezone(UTC))
    return sorted(found)


CROSS_CHECKED = [
    "FREQ=MINUTELY;INTERVAL=37",
    "FREQ=MINUTELY;INTERVAL=45;BYHOUR=1,2,3",
    "FREQ=HOURLY;INTERVAL=5;BYMINUTE=10,40",
    "FREQ=HOURLY;BYHOUR=1,2,3;BYMINUTE=30",
    "FREQ=DAILY;INTERVAL=3;BYHOUR=2;BYMINUTE=30",
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;WKST=SU;BYHOUR=2,14",
    "FREQ=MONTHLY;BYDAY=-1SU;BYHOUR=2;BYMINUTE=15",
    "FREQ=MONTHLY;BYSETPOS=-1;BYDAY=MO,TU,WE,TH,FR;BYHOUR=23",
    "FREQ=MONTHLY;INTERVAL=2;BYMONTHDAY=31,-1",
    "FREQ=YEARLY;BYWEEKNO=10,11,12,44,45;BYDAY=SU;BYHOUR=1,2",
    "DTSTART:20240110T101700\nFREQ=HOURLY;INTERVAL=7",
    "DTSTART:20240103T023000\nFREQ=WEEKLY",
    "DTSTART:20240131T013000\nFREQ=MONTHLY",
    "DTSTART;TZID=America/New_York:20240105T000000\nFREQ=DAILY;BYHOUR=1,2,3;BYMINUTE=0,30",
]


@pytest.mark.parametrize("default", [PARIS, NEW_YORK], ids=["paris", "new_york"])
@pytest.mark.parametrize("text", CROSS_CHECKED)
def test_same_occurrences_as_iterating_from_dtstart(text: str, default: tzinfo) -> None:
    schedule = Schedule.parse(text, default)
    expected = reference(text, default, datetime(2025, 4, 1))
    probes: list[datetime] = []
    for first, last in ((2024, 3, 1), (2024, 4, 10)), ((2024, 10, 15), (2024, 11, 12)):
        moment = datetime(*first, tzinfo=UTC)
        while moment < datetime(*last, tzinfo=UTC):
            probes.append(moment)
            moment += timedelta(hours=3, minutes=13, seconds=7)
    for occurrence in expected:
        if probes[0] <= occurrence <= probes[-1]:
            probes += [occurrence - timedelta(seconds=1), occurrence]
    for moment in probes:
        after = expected[bisect_right(expected, moment)]
        index = bisect_left(expected, moment + timedelta(microseconds=1))
        before = expected[index - 1] if index else None
        assert utc(schedule.next_after(moment)) == after, moment
        assert utc(schedule.latest_at_or_before(moment)) == before, moment


# --- the returned values -----------------------------------------------------------------------


def test_results_are_aware_and_in_the_rule_zone() -> None:
    schedule = Schedule.parse("FREQ=DAILY;BYHOUR=3", NEW_YORK)
    moment = datetime(2024, 7, 1, tzinfo=UTC)
    for found in (
        schedule.next_after(moment),
        schedule.latest_at_or_before(moment),
        schedule.due(None, moment),
    ):
        assert found is not None and found.tzinfo is NEW_YORK
        assert found.utcoffset() == timedelta(hours=-4)


def test_repr_names_the_rule() -> None:
    assert repr(Schedule.parse(" FREQ=HOURLY ", PARIS)) == "Schedule('FREQ=HOURLY')"


@pytest.mark.parametrize(
    ("text", "gap"),
    [
        ("FREQ=DAILY;BYHOUR=3", timedelta(days=1)),
        ("FREQ=WEEKLY;BYDAY=MO,FR;BYHOUR=2", timedelta(days=4)),  # Friday to Monday
        ("FREQ=MINUTELY;INTERVAL=15", timedelta(minutes=15)),
        ("FREQ=DAILY;COUNT=1", None),  # no second window
    ],
)
def test_longest_gap_is_how_stale_a_replica_may_get(text: str, gap: timedelta | None) -> None:
    assert Schedule.parse(text, default_tz=UTC).longest_gap(datetime(2026, 11, 30, 12, tzinfo=UTC)) == gap


def test_longest_gap_sees_a_zones_long_night() -> None:
    """03:00 daily in Paris: the night the clocks go back lasts 25 hours."""
    paris = Schedule.parse("DTSTART;TZID=Europe/Paris:20260101T030000\nRRULE:FREQ=DAILY")
    assert paris.longest_gap(datetime(2026, 10, 1, tzinfo=UTC)) == timedelta(hours=25)
