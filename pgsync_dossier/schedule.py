"""Sync windows from an RFC 5545 recurrence rule (the ``SYNC_SCHEDULE`` setting). Pure: no I/O.

The rule is not handed to ``dateutil.rrule.rrulestr`` and queried with ``after``/``before``
because that would be wrong or slow in ways a scheduler cannot afford:
- dateutil iterates from DTSTART on every query, so a 5-minute rule asked about a date years
  later walks hundreds of thousands of occurrences. Here each query re-anchors the rule at the
  start of the period (aligned to INTERVAL) just before the moment asked about; with every
  default BY* part made explicit, that yields exactly the occurrences of the original rule.
- without DTSTART, dateutil anchors at the current time, so windows would depend on when the
  process started. Here the anchor is fixed: local midnight of 2024-01-01 (a Monday).
- dateutil compares aware datetimes of one zone by wall clock, which misorders the two 01:30s
  of a fall-back night. Here occurrences are generated as naive wall-clock times and every
  comparison is made between UTC instants.

DST follows RFC 5545 (3.3.5): a wall-clock time skipped by spring-forward is moved forward by the
gap (02:30 becomes 03:30, the instant 24 h after the previous night's 02:30), a time that occurs
twice on fall-back means the first one. As the rule is wall-clock based, a sub-daily rule yields
nothing during the repeated hour (its wall-clock times were already used by the first one).
"""

from __future__ import annotations

import dataclasses
import re
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import islice
from typing import Literal

from dateutil import tz
from dateutil.rrule import DAILY, HOURLY, MINUTELY, MONTHLY, SECONDLY, WEEKLY, YEARLY, rrule
from dateutil.rrule import weekday as Weekday
from dateutil.rrule import weekdays as WEEKDAYS

_Freq = Literal[0, 1, 2, 3, 4, 5]
_FREQS: dict[str, _Freq] = {
    "YEARLY": YEARLY,
    "MONTHLY": MONTHLY,
    "WEEKLY": WEEKLY,
    "DAILY": DAILY,
    "HOURLY": HOURLY,
    "MINUTELY": MINUTELY,
}
#: Upper bound of one period of each frequency, to size the look-back window of a query.
_PERIOD = {
    YEARLY: timedelta(days=366),
    MONTHLY: timedelta(days=31),
    WEEKLY: timedelta(weeks=1),
    DAILY: timedelta(days=1),
    HOURLY: timedelta(hours=1),
    MINUTELY: timedelta(minutes=1),
}
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
#: (lowest, highest absolute value, negative values allowed) of the integer rule parts.
_INT_PARTS = {
    "BYSECOND": (0, 59, False),
    "BYMINUTE": (0, 59, False),
    "BYHOUR": (0, 23, False),
    "BYMONTH": (1, 12, False),
    "BYMONTHDAY": (1, 31, True),
    "BYYEARDAY": (1, 366, True),
    "BYWEEKNO": (1, 53, True),
    "BYSETPOS": (1, 366, True),
}
#: Without DTSTART the anchor must not be the parse time, or windows would move with restarts.
_DEFAULT_START = datetime(2024, 1, 1)
#: COUNT is resolved to its last occurrence once, at parse time; this keeps that step short.
_MAX_COUNT = 100_000
_SUB_MINUTE = "sync windows closer than a minute are not supported"
_DATE_RE = re.compile(r"(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z?))?")
_BYDAY_RE = re.compile(r"([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)")


def _utc(moment: datetime) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"expected a datetime, got {type(moment).__name__}")
    if moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: a time zone is required")
    return moment.astimezone(UTC)


def _instant(wall: datetime, zone: tzinfo) -> datetime:
    return tz.resolve_imaginary(wall.replace(tzinfo=zone)).astimezone(UTC)


def _wall(moment: datetime, zone: tzinfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _drift(moment: datetime, zone: tzinfo) -> timedelta:
    """How far wall-clock order may disagree with instant order around moment (DST jumps)."""
    try:
        offsets = [
            (moment + timedelta(days=days)).astimezone(zone).utcoffset() or timedelta() for days in (-2, 0, 2)
        ]
    except OverflowError:
        return timedelta(days=1)
    return abs(offsets[1] - offsets[0]) + abs(offsets[2] - offsets[1])


def _zone(name: str) -> tzinfo:
    # Only zone database keys: gettz would also read a file path or invent a POSIX TZ string.
    found = None
    if name and not name.startswith(("/", ".", ":")):
        try:
            found = tz.gettz(name)
        except Exception:  # a key escaping the zone directory warns-as-error, a bad file raises
            found = None
    if not isinstance(found, tz.tzfile | tz.tzutc):
        raise ValueError(f"unknown TZID {name!r}")
    return found


def _date_value(name: str, text: str) -> tuple[datetime, bool, bool]:
    """Return (naive value, ends with Z, is a date without time)."""
    match = _DATE_RE.fullmatch(text.strip().upper())
    if match is not None:
        year, month, day, hour, minute, second, utc = match.groups()
        try:
            hms = [int(x or 0) for x in (hour, minute, second)]
            value = datetime(int(year), int(month), int(day), hms[0], hms[1], hms[2])
        except ValueError:
            pass
        else:
            return value, bool(utc), hour is None
    raise ValueError(f"invalid {name} {text.strip()!r}, expected YYYYMMDDTHHMMSS[Z]")


def _date_line(name: str, params: list[str], value: str, zone: tzinfo) -> list[tuple[datetime, tzinfo]]:
    """Parse DTSTART/RDATE/EXDATE values into (naive wall-clock time, its zone)."""
    tzid = None
    for param in params:
        key, _, arg = param.partition("=")
        key, arg = key.strip().upper(), arg.strip()
        if key == "TZID":
            tzid = _zone(arg)
        elif key != "VALUE" or arg.upper() not in ("DATE", "DATE-TIME"):
            raise ValueError(f"unsupported parameter {param.strip()!r} on {name}")
    out = []
    for item in value.split(","):
        wall, utc, _ = _date_value(name, item)
        if utc and tzid is not None:
            raise ValueError(f"{name} cannot have both TZID and a Z suffix")
        out.append((wall, tz.UTC if utc else tzid or zone))
    return out


def _positive(name: str, text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a positive integer, got {text!r}")
    return int(text)


def _int_list(name: str, text: str) -> tuple[int, ...]:
    low, high, negative = _INT_PARTS[name]
    values = []
    for item in text.split(","):
        try:
            value = int(item)
        except ValueError:
            raise ValueError(f"{name} must be a list of integers, got {text!r}") from None
        if not low <= abs(value) <= high or (value < 0 and not negative):
            raise ValueError(f"{name} value {value} is out of range")
        values.append(value)
    return tuple(values)


def _byday(text: str) -> tuple[Weekday, ...]:
    days = []
    for item in text.split(","):
        match = _BYDAY_RE.fullmatch(item.strip())
        if match is None or (match[1] is not None and not 1 <= abs(int(match[1])) <= 53):
            raise ValueError(f"invalid BYDAY {item.strip()!r}")
        day = WEEKDAYS[_DAYS.index(match[2])]
        days.append(day(int(match[1])) if match[1] else day)
    return tuple(days)


@dataclass(frozen=True)
class _Rule:
    """One RRULE line: occurrences as naive wall-clock times, compared as UTC instants."""

    template: rrule
    zone: tzinfo
    start: datetime  # naive wall-clock DTSTART
    freq: _Freq
    interval: int
    wkst: int
    until: datetime | None = None  # UTC instant
    wall_end: datetime | None = None  # wall-clock time past which nothing occurs

    @classmethod
    def parse(cls, body: str, start: datetime, zone: tzinfo, start_given: bool) -> _Rule:
        parts: dict[str, str] = {}
        for item in body.split(";"):
            key, equals, value = item.partition("=")
            key, value = key.strip().upper(), value.strip().upper()
            if not equals or not key or not value:
                raise ValueError(f"malformed rule part {item.strip()!r}")
            if key in parts:
                raise ValueError(f"{key} is given twice")
            parts[key] = value
        if "FREQ" not in parts:
            raise ValueError("FREQ is missing")
        freq_name = parts.pop("FREQ")
        if freq_name == "SECONDLY":
            raise ValueError(_SUB_MINUTE)
        if freq_name not in _FREQS:
            raise ValueError(f"unknown FREQ {freq_name!r}")
        freq = _FREQS[freq_name]
        interval = _positive("INTERVAL", parts.pop("INTERVAL", "1"))
        count = _positive("COUNT", parts.pop("COUNT")) if "COUNT" in parts else None
        until_text = parts.pop("UNTIL", None)
        if count is not None and until_text is not None:
            raise ValueError("COUNT and UNTIL cannot both be given")
        if count is not None and count > _MAX_COUNT:
            raise ValueError(f"COUNT above {_MAX_COUNT} is not supported, use UNTIL")
        wkst = parts.pop("WKST", "MO")
        if wkst not in _DAYS:
            raise ValueError(f"invalid WKST {wkst!r}")
        byday = _byday(parts.pop("BYDAY")) if "BYDAY" in parts else None
        by: dict[str, tuple[int, ...]] = {}
        for key, value in parts.items():
            if key not in _INT_PARTS:
                raise ValueError(f"unknown rule part {key!r}")
            by[key] = _int_list(key, value)
        if len(by.get("BYSECOND", ())) > 1:
            raise ValueError(_SUB_MINUTE)
        # dateutil would spin to year 9999 looking for February 30th: catch the usual typo early.
        months, monthdays = by.get("BYMONTH", range(1, 13)), by.get("BYMONTHDAY", (1,))
        if not any(abs(day) <= _MONTH_DAYS[month - 1] for month in months for day in monthdays):
            raise ValueError("the rule has no occurrence")

        # Spell out what dateutil would take from DTSTART, so that re-anchoring keeps it.
        if byday is None and not by.keys() & {"BYWEEKNO", "BYYEARDAY", "BYMONTHDAY"}:
            if freq == YEARLY:
                by.setdefault("BYMONTH", (start.month,))
                by["BYMONTHDAY"] = (start.day,)
            elif freq == MONTHLY:
                by["BYMONTHDAY"] = (start.day,)
            elif freq == WEEKLY:
                byday = (WEEKDAYS[start.weekday()],)
        for key, default, finer in (
            ("BYHOUR", start.hour, HOURLY),
            ("BYMINUTE", start.minute, MINUTELY),
            ("BYSECOND", start.second, SECONDLY),
        ):
            if freq < finer:
                by.setdefault(key, (default,))
        try:
            template = rrule(
                freq, dtstart=start, interval=interval, wkst=_DAYS.index(wkst),
                bysetpos=by.get("BYSETPOS"), bymonth=by.get("BYMONTH"),
                bymonthday=by.get("BYMONTHDAY"), byyearday=by.get("BYYEARDAY"),
                byweekno=by.get("BYWEEKNO"), byweekday=byday, byhour=by.get("BYHOUR"),
                byminute=by.get("BYMINUTE"), bysecond=by.get("BYSECOND"),
            )  # fmt: skip
        except ValueError:  # INTERVAL and BYHOUR/BYMINUTE never meet
            raise ValueError("the rule has no occurrence") from None
        rule = cls(template, zone, start, freq, interval, _DAYS.index(wkst))

        if until_text is not None:
            wall, utc, is_date = _date_value("UNTIL", until_text)
            if is_date:  # "UNTIL=20241231" is meant to include the 31st
                wall += timedelta(days=1, seconds=-1)
            until = wall.replace(tzinfo=UTC) if utc else _instant(wall, zone)
            if until < _instant(start, zone):
                raise ValueError(
                    "UNTIL must be after DTSTART" if start_given
                    else "UNTIL must be after 2024-01-01, the start of a rule without DTSTART"
                )  # fmt: skip
            return dataclasses.replace(rule, until=until, wall_end=_wall(until, zone) + _drift(until, zone))
        if count is not None:
            # COUNT is counted from DTSTART, which re-anchoring loses: turn it into an end.
            last = next(iter(deque(islice(rule.walls(start, None), count), maxlen=1)), None)
            if last is None:
                raise ValueError("the rule has no occurrence")
            return dataclasses.replace(rule, wall_end=last)
        return rule

    def walls(self, first: datetime, last: datetime | None) -> Iterator[datetime]:
        """Occurrences in [first, last], first being a period start found by `anchor`."""
        try:
            yield from self.template.replace(dtstart=first, until=last)
        except ValueError:  # dateutil's way to say INTERVAL and BYHOUR/BYMINUTE never meet again
            return

    def anchor(self, wall: datetime) -> datetime:
        """The start of the period that holds `wall`, among the periods INTERVAL selects."""
        start, n = self.start, self.interval
        if wall <= start:
            return start
        if self.freq == YEARLY:
            found = datetime(start.year + (wall.year - start.year) // n * n, 1, 1)
        elif self.freq == MONTHLY:
            months = (wall.year - start.year) * 12 + wall.month - start.month
            year, month = divmod(start.year * 12 + start.month - 1 + months // n * n, 12)
            found = datetime(year, month + 1, 1)
        elif self.freq == WEEKLY:
            first = datetime.combine(start.date(), datetime.min.time())
            first -= timedelta(days=(start.weekday() - self.wkst) % 7)
            found = first + (wall - first) // timedelta(weeks=n) * timedelta(weeks=n)
        else:
            step = _PERIOD[self.freq]
            first = start.replace(second=0)
            if self.freq != MINUTELY:
                first = first.replace(minute=0)
            if self.freq == DAILY:
                first = first.replace(hour=0)
            found = first + (wall - first) // (step * n) * (step * n)
        return max(found, start)

    def next(self, moment: datetime) -> datetime | None:
        if self.until is not None and moment >= self.until:
            return None
        best = best_wall = None
        low = _wall(moment, self.zone) - _drift(moment, self.zone)  # earlier walls are earlier
        for wall in self.walls(self.anchor(low), self.wall_end):
            # Later walls map to later instants, except skipped times moved forward by the gap.
            if best_wall is not None and wall > best_wall:
                break
            if wall < low:
                continue
            found = _instant(wall, self.zone)
            if found > moment and (best is None or found < best):
                best, best_wall = found, _wall(found, self.zone)
        if best is None or (self.until is not None and best > self.until):
            return None
        return best

    def latest(self, moment: datetime) -> datetime | None:
        if self.until is not None:
            moment = min(moment, self.until)
        high = _wall(moment, self.zone) + _drift(moment, self.zone)
        if self.wall_end is not None:
            high = min(high, self.wall_end)
        span = _PERIOD[self.freq] * self.interval * 2
        while high >= self.start:
            low = self.start if high - self.start <= span else high - span
            first = self.anchor(low)
            best = floor = None
            for wall in reversed(list(self.walls(first, high))):
                if floor is not None and wall < floor:
                    break
                found = _instant(wall, self.zone)
                if found <= moment and (best is None or found > best):
                    # Nothing below this wall-clock time can come after `best`.
                    best, floor = found, _wall(found, self.zone) - _drift(found, self.zone)
            if first == self.start or (floor is not None and first <= floor):
                return best
            span *= 4
        return None


class Schedule:
    """When sync windows open: the occurrences of a recurrence rule, as aware datetimes.

    Returned datetimes are in the rule's zone. Compare them after `.astimezone(UTC)` if the two
    01:30s of a fall-back night matter: Python compares datetimes of one zone by wall clock.
    """

    __slots__ = ("_exdates", "_rdates", "_rules", "text", "zone")
    text: str  # as the user wrote it, stripped: what error messages and logs should quote
    zone: tzinfo  # the rule's zone (TZID, UTC for a Z DTSTART, else default_tz)

    def __init__(
        self,
        text: str,
        zone: tzinfo,
        rules: list[_Rule],
        rdates: list[datetime],
        exdates: frozenset[datetime],
    ) -> None:
        self.text = text
        self.zone = zone
        self._rules = rules
        self._rdates = rdates
        self._exdates = exdates

    def __repr__(self) -> str:
        return f"Schedule({self.text!r})"

    @classmethod
    def parse(cls, text: str, default_tz: tzinfo | None = None) -> Schedule:
        """Raise ValueError with a one-line reason, so that config errors read well."""
        text = text.strip()
        if not text:
            raise ValueError("the schedule is empty")
        zone: tzinfo = tz.tzlocal() if default_tz is None else default_tz
        start, start_given = _DEFAULT_START, False
        bodies: list[str] = []
        dated: list[tuple[str, list[str], str]] = []
        for line in filter(None, (raw.strip() for raw in text.splitlines())):
            head, colon, value = line.partition(":")
            name, *params = head.split(";")
            name = name.strip().upper()
            if not colon or "=" in name:  # a bare rule: "FREQ=DAILY;BYHOUR=3"
                if "=" not in line:
                    raise ValueError(f"not a recurrence rule: {line!r}")
                bodies.append(line)
            elif name == "RRULE":
                if params:
                    raise ValueError(f"unsupported parameter {params[0].strip()!r} on RRULE")
                bodies.append(value)
            elif name == "DTSTART":
                if start_given:
                    raise ValueError("DTSTART is given twice")
                dtstarts = _date_line(name, params, value, zone)
                if len(dtstarts) != 1:
                    raise ValueError("DTSTART must have exactly one value")
                (start, zone), start_given = dtstarts[0], True
            elif name in ("RDATE", "EXDATE"):
                dated.append((name, params, value))
            else:
                raise ValueError(f"unsupported line {name!r}")
        rdates: set[datetime] = set()
        exdates: set[datetime] = set()
        for name, params, value in dated:
            found = _date_line(name, params, value, zone)
            (rdates if name == "RDATE" else exdates).update(_instant(*item) for item in found)
        if not bodies and not rdates:
            raise ValueError("RRULE is missing")
        rules = [_Rule.parse(body, start, zone, start_given) for body in bodies]
        schedule = cls(text, zone, rules, sorted(rdates), frozenset(exdates))
        first = min([_instant(start, zone), *rdates])
        if schedule._next(first - timedelta(days=1)) is None:
            raise ValueError("the rule has no occurrence")
        return schedule

    def _next(self, moment: datetime) -> datetime | None:
        while True:
            rdates = self._rdates[bisect_right(self._rdates, moment) :][:1]
            found = [rule.next(moment) for rule in self._rules] + rdates
            best = min((x for x in found if x is not None), default=None)
            if best is None or best not in self._exdates:
                return best
            moment = best

    def _latest(self, moment: datetime) -> datetime | None:
        while True:
            index = bisect_right(self._rdates, moment)
            found = [rule.latest(moment) for rule in self._rules] + self._rdates[:index][-1:]
            best = max((x for x in found if x is not None), default=None)
            if best is None or best not in self._exdates:
                return best
            moment = best - timedelta(microseconds=1)

    def next_after(self, moment: datetime) -> datetime | None:
        found = self._next(_utc(moment))
        return None if found is None else found.astimezone(self.zone)

    def latest_at_or_before(self, moment: datetime) -> datetime | None:
        found = self._latest(_utc(moment))
        return None if found is None else found.astimezone(self.zone)

    def due(self, last_window: datetime | None, now: datetime) -> datetime | None:
        """Missed windows are coalesced into the latest: one sync catches up on all of them."""
        since = None if last_window is None else _utc(last_window)
        found = self._latest(_utc(now))
        if found is None or (since is not None and found <= since):
            return None
        return found.astimezone(self.zone)

    def is_finished(self, now: datetime) -> bool:
        return self._next(_utc(now)) is None

    def longest_gap(
        self, now: datetime, horizon: timedelta = timedelta(days=400), windows: int = 500
    ) -> timedelta | None:
        """The longest wait between two windows from the latest one on, over the horizon (or
        the first `windows` windows): how stale a replica may legitimately get (alerts compare
        against it). None when fewer than two windows remain."""
        moment = self._latest(_utc(now)) or self._next(_utc(now))
        longest: timedelta | None = None
        end = _utc(now) + horizon
        for _ in range(windows):
            if moment is None or moment > end:
                break
            following = self._next(moment)
            if following is None:
                break
            gap = following - moment
            longest = gap if longest is None or gap > longest else longest
            moment = following
        return longest
