"""Chinese working days and statutory deadlines, in Asia/Shanghai.

Which days are working days
    The official arrangement published each year by the State Council (国务院办公厅关于××年部分节假日安排的
    通知): statutory holidays are rest days, ordinary Saturdays and Sundays are rest days, and the weekend days
    the notice moves (调休, "X月X日（周六）上班") are working days. The PyPI package ``chinese-calendar`` (pinned
    1.11.0) carries the arrangement for 2004–2026. Files in ``deployments/calendar/*.yaml`` (see
    :mod:`engine.calendar.files`) add later years and may correct single dates of any year; a date a file names
    wins over the package. A year neither knows is *unknown*: a computation that needs one of its days decides
    it by a plain Monday–Friday rule and says so (:attr:`Deadline.unknown_years`, :attr:`Deadline.note`); it is
    never estimated silently.

How a deadline is counted (the ``caseflow:calendar`` kinds)
    ``working_days`` (``P3D`` = three working days; only whole days are accepted)
        行政处罚法 第八十五条: the law's "二日/三日/五日/七日" are working days, statutory holidays excluded
        (行政许可法 第八十二条 says the same for licensing periods). Counting follows the general rule for
        periods, 民法典 第二百零一条: the day of the triggering event is not counted, counting starts with the
        next day. Each following working day counts one; holidays and ordinary weekend days count none; an
        adjusted working Saturday or Sunday counts one. The period ends at 24:00 of the Nth working day
        (民法典 第二百零三条第二款), i.e. at 00:00 of the next calendar day. ``P0D`` ends at 24:00 of the
        triggering day.
    ``calendar_days`` (``P15D``, ``P90D``, ``P1M``, ``P1Y``; no hours)
        The triggering day is not counted (第二百零一条); the last day is the triggering date moved by the
        duration, a month or year period ending on the corresponding day of the last month or, without one, on
        that month's last day (第二百零二条). When the last day is a rest day (a statutory holiday or a weekend
        day that is not an adjusted working day), the period ends on the first working day after it (第二百零三条
        第一款); it ends at 24:00 of the last day (第二百零三条第二款). Used for 行政处罚法 第六十条 (90 days from
        filing) and 第六十七条 (15 days to pay).
    ``hours`` (``PT24H``; days count as 24 hours)
        Counted from the triggering moment itself (第二百零一条第二款): due = trigger + elapsed time. No calendar
        data is involved, so it is never estimated. Used for 国务院令第310号's "24小时".

Office hours (第二百零三条第二款 "有业务时间的，停止业务活动的时间为截止时间") are not modelled: a period ends at
24:00. Due times are returned in Asia/Shanghai; a due time of ``2026-10-11T00:00:00+08:00`` is the end of
2026-10-10.
"""

from __future__ import annotations

import calendar as _gregorian
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

import chinese_calendar

from engine.lang.iso8601 import Duration

SHANGHAI: Final = ZoneInfo("Asia/Shanghai")
CALENDAR_KINDS: Final = ("working_days", "calendar_days", "hours")
MAX_WORKING_DAYS: Final = 3660  # ten years and more of working days; anything longer is a modelling error

_PACKAGE_HOLIDAYS: Final[Mapping[date, str]] = chinese_calendar.holidays
_PACKAGE_WORKDAYS: Final[Mapping[date, str]] = chinese_calendar.workdays
_PACKAGE_YEARS: Final = range(
    min(d.year for d in _PACKAGE_HOLIDAYS), max(d.year for d in _PACKAGE_HOLIDAYS) + 1
)


class CalendarError(ValueError):
    """A deadline that cannot be computed as asked (e.g. ``PT3H`` counted in working days)."""


class UnknownCalendarYear(LookupError):
    """Neither chinese-calendar nor a local calendar file knows the official arrangement for this year."""

    def __init__(self, day: date) -> None:
        super().__init__(f"no official holiday arrangement is known for {day.year} (asked about {day})")
        self.year = day.year


def _chinese_name(name: str) -> str:
    try:
        return str(chinese_calendar.Holiday(name).chinese)
    except ValueError:
        return name


def estimated_note(years: Iterable[int]) -> str:
    """The Chinese note shown to staff on a deadline computed past the known arrangement."""
    listed = "、".join(str(y) for y in sorted(set(years)))
    return f"期限超出已知节假日安排（{listed} 年），按周一至周五推算，请核对"


@dataclass(frozen=True)
class DayInfo:
    day: date
    working: bool
    known: bool  # False: decided by the Monday–Friday fallback
    name: str | None = None  # the holiday or the adjusted working day's holiday, in Chinese where known


@dataclass(frozen=True)
class Deadline:
    """A computed due time; ``unknown_years`` lists the years decided by the Monday–Friday fallback."""

    due: datetime
    kind: str
    last_day: date | None = None  # the last day of a day-counted period (the due time is its 24:00)
    unknown_years: tuple[int, ...] = field(default=())

    @property
    def estimated(self) -> bool:
        return bool(self.unknown_years)

    @property
    def note(self) -> str | None:
        return estimated_note(self.unknown_years) if self.unknown_years else None


class BusinessCalendar:
    """Working days from chinese-calendar plus local files; deadlines by the rules in the module docstring.

    ``holidays`` and ``workdays`` map dates to names and win over the package; ``years`` maps each year a file
    describes completely to where that arrangement comes from (its ``source``).
    """

    def __init__(
        self,
        holidays: Mapping[date, str] | None = None,
        workdays: Mapping[date, str] | None = None,
        years: Mapping[int, str] | None = None,
        *,
        timezone: tzinfo = SHANGHAI,
        use_package: bool = True,
    ) -> None:
        self._holidays = dict(holidays or {})
        self._workdays = dict(workdays or {})
        both = sorted(set(self._holidays) & set(self._workdays))
        if both:
            raise CalendarError(f"{both[0]} is given both as a holiday and as a working day")
        self._years = dict(years or {})
        self.timezone = timezone
        self._package_years = _PACKAGE_YEARS if use_package else range(0)

    @classmethod
    def official(cls) -> BusinessCalendar:
        """chinese-calendar alone, without local files."""
        return cls()

    # ------------------------------------------------------------------------------------------ days
    def knows(self, day: date) -> bool:
        return day.year in self._package_years or day.year in self._years

    def known_years(self) -> list[int]:
        return sorted(set(self._package_years) | set(self._years))

    def source(self, year: int) -> str | None:
        """Where the arrangement of a year comes from (a local file's source, or the package), or None."""
        if year in self._years:
            return self._years[year]
        if year in self._package_years:
            return f"chinese-calendar {_package_version()}"
        return None

    def day_info(self, day: date) -> DayInfo:
        if day in self._workdays:
            return DayInfo(day, True, True, self._workdays[day])
        if day in self._holidays:
            return DayInfo(day, False, True, self._holidays[day])
        weekday = day.weekday() < 5
        if day.year in self._package_years:
            if day in _PACKAGE_WORKDAYS:
                return DayInfo(day, True, True, _chinese_name(_PACKAGE_WORKDAYS[day]))
            if day in _PACKAGE_HOLIDAYS:
                return DayInfo(day, False, True, _chinese_name(_PACKAGE_HOLIDAYS[day]))
            return DayInfo(day, weekday, True)
        return DayInfo(day, weekday, day.year in self._years)

    def is_working_day(self, day: date) -> bool:
        """Whether ``day`` is a working day; :class:`UnknownCalendarYear` when its year is unknown."""
        info = self.day_info(day)
        if not info.known:
            raise UnknownCalendarYear(day)
        return info.working

    # ------------------------------------------------------------------------------------- deadlines
    def local(self, moment: datetime) -> datetime:
        """``moment`` in the calendar's zone (a naive value is taken to be in that zone already)."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            return moment.replace(tzinfo=self.timezone)
        return moment.astimezone(self.timezone)

    def _end_of(self, day: date) -> datetime:
        following = day + timedelta(days=1)
        return datetime(following.year, following.month, following.day, tzinfo=self.timezone)

    def add_working_days(self, start: datetime, days: int) -> Deadline:
        """24:00 of the ``days``-th working day after the day of ``start``."""
        if days < 0:
            raise CalendarError(f"a period of {days} working days is negative")
        if days > MAX_WORKING_DAYS:
            raise CalendarError(f"a period of {days} working days is longer than {MAX_WORKING_DAYS}")
        day = self.local(start).date()
        unknown: set[int] = set()
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            info = self.day_info(day)
            if not info.known:
                unknown.add(day.year)
            if info.working:
                counted += 1
        return Deadline(self._end_of(day), "working_days", day, tuple(sorted(unknown)))

    def add_calendar_days(
        self, start: datetime, days: int = 0, *, months: int = 0, years: int = 0
    ) -> Deadline:
        """24:00 of the last day (start date moved by the period), moved past rest days to a working day."""
        if min(days, months, years) < 0:
            raise CalendarError("a period of calendar days must not be negative")
        first = self.local(start).date()
        try:
            last = _add_months(first, years * 12 + months) + timedelta(days=days)
        except (OverflowError, ValueError) as exc:
            raise CalendarError(f"the period runs out of the calendar: {exc}") from None
        unknown: set[int] = set()
        while True:
            info = self.day_info(last)
            if not info.known:
                unknown.add(last.year)
            if info.working:
                break
            last += timedelta(days=1)
        return Deadline(self._end_of(last), "calendar_days", last, tuple(sorted(unknown)))

    def add_hours(self, start: datetime, hours: float | timedelta) -> Deadline:
        """Elapsed time from the triggering moment itself; no calendar data is involved."""
        delta = hours if isinstance(hours, timedelta) else timedelta(hours=hours)
        if delta < timedelta(0):
            raise CalendarError("a period of hours must not be negative")
        return Deadline(self.local(start) + delta, "hours")

    def deadline(self, kind: str, start: datetime, duration: Duration | timedelta) -> Deadline:
        """The due time of an ISO 8601 duration counted in ``kind`` (one of :data:`CALENDAR_KINDS`)."""
        period = _as_duration(duration)
        check_duration(kind, period)
        if kind == "working_days":
            return self.add_working_days(start, period.days)
        if kind == "calendar_days":
            return self.add_calendar_days(
                start, period.weeks * 7 + period.days, months=period.months, years=period.years
            )
        if period.years or period.months:
            # Years and months have no fixed length in hours: move the wall clock as the plain timer does.
            return Deadline(period.add_to(self.local(start)), "hours")
        elapsed = timedelta(
            days=period.days + period.weeks * 7,
            hours=period.hours,
            minutes=period.minutes,
            seconds=float(period.seconds),
        )
        return self.add_hours(start, elapsed)


def check_duration(kind: str, duration: Duration) -> None:
    """Refuse a duration that the kind cannot count (raised at deploy for literal values)."""
    if kind not in CALENDAR_KINDS:
        raise CalendarError(f"calendar '{kind}' is not one of {', '.join(CALENDAR_KINDS)}")
    text = duration.isoformat()
    has_time = bool(duration.hours or duration.minutes or duration.seconds)
    if kind == "working_days" and (has_time or duration.years or duration.months or duration.weeks):
        raise CalendarError(
            f"duration {text} cannot be counted in working days: write whole days, e.g. P3D "
            '(or use caseflow:calendar="hours" / "calendar_days")'
        )
    if kind == "calendar_days" and has_time:
        raise CalendarError(
            f"duration {text} has hours, minutes or seconds, which calendar days do not count: write days, "
            'weeks, months or years (e.g. P15D), or use caseflow:calendar="hours"'
        )


def _as_duration(value: Duration | timedelta) -> Duration:
    if isinstance(value, Duration):
        return value
    seconds = value.seconds + value.microseconds / 1_000_000
    whole = int(seconds) if float(seconds).is_integer() else seconds
    return Duration(days=value.days, seconds=whole)


def _add_months(day: date, months: int) -> date:
    if not months:
        return day
    year, index = divmod(day.year * 12 + day.month - 1 + months, 12)
    month = index + 1
    return date(year, month, min(day.day, _gregorian.monthrange(year, month)[1]))


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("chinese-calendar")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "(unknown version)"
