"""ISO 8601 timer values for BPMN timer events: durations, date-times and repeating intervals.

* ``timeDuration``: ``PT5M``, ``P3D``, ``P1Y2M10DT2H30M``, ``P2W`` (see :func:`parse_duration`)
* ``timeDate``: ``2027-01-01T08:00:00+08:00``, ``2027-01-01T00:00Z``, ``2027-01-01`` (see
  :func:`parse_datetime`); values without an offset are in the engine's default time zone
* ``timeCycle``: ``R3/PT10M``, ``R/PT1H``, ``R5/2027-01-01T00:00:00Z/P1D``, ``R3/PT10M/<end>``
  (see :func:`parse_cycle`); cron expressions are not supported

All results are timezone-aware.  Calendar parts of a duration (years, months, weeks, days) move
the local wall-clock time (``Jan 31 + P1M`` is the last day of February, ``P1D`` keeps the time of
day), while hours, minutes and seconds are elapsed time.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final, Literal

__all__ = [
    "Cycle",
    "Duration",
    "TimerValueError",
    "looks_like_iso8601",
    "parse_cycle",
    "parse_datetime",
    "parse_duration",
    "resolve_due",
]

_DAYS_PER_YEAR: Final = 365.2425
_DAYS_PER_MONTH: Final = _DAYS_PER_YEAR / 12
_SECONDS_PER_DAY: Final = 86_400
_MAX_YEARS: Final = 1000
_MAX_SECONDS: Final = _MAX_YEARS * _DAYS_PER_YEAR * _SECONDS_PER_DAY
_MAX_DIGITS: Final = 12
_QUOTE_LIMIT: Final = 200

_DURATION_RE: Final = re.compile(
    r"""
    P
    (?:(?P<years>\d+)Y)?
    (?:(?P<months>\d+)M)?
    (?:(?P<weeks>\d+)W)?
    (?:(?P<days>\d+)D)?
    (?P<time>T
        (?:(?P<hours>\d+)H)?
        (?:(?P<minutes>\d+)M)?
        (?:(?P<seconds>\d+(?:[.,]\d+)?)S)?
    )?
    """,
    re.IGNORECASE | re.VERBOSE,
)
_DURATION_FIELDS: Final = ("years", "months", "weeks", "days", "hours", "minutes", "seconds")

_DATETIME_RE: Final = re.compile(
    r"""
    (?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})
    (?:T
        (?P<hour>\d{2}):(?P<minute>\d{2})
        (?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?
        (?P<offset>Z|[+-]\d{2}(?::?\d{2})?)?
    )?
    """,
    re.IGNORECASE | re.VERBOSE,
)
_REPEAT_RE: Final = re.compile(r"R(?P<count>\d*)", re.IGNORECASE)


def _quote(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > _QUOTE_LIMIT:
        text = text[: _QUOTE_LIMIT - 3] + "..."
    return repr(text)


class TimerValueError(ValueError):
    """A timer value (duration, date or cycle) that cannot be used; the message quotes it."""

    value: object

    def __init__(self, message: str, value: object = None) -> None:
        super().__init__(message)
        self.value = value


# --------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------


def _add_months(moment: datetime, months: int) -> datetime:
    if not months:
        return moment
    year, month_index = divmod(moment.year * 12 + moment.month - 1 + months, 12)
    if not 1 <= year <= 9999:
        raise OverflowError("date value out of range")
    month = month_index + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration such as ``P1Y2M10DT2H30M``."""

    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: float = 0

    def add_to(self, start: datetime) -> datetime:
        """``start`` moved by this duration.

        Years and months are added on the calendar (the day is clamped to the length of the
        target month, so ``Jan 31 + P1M`` is Feb 28/29); weeks and days move the local date keeping
        the wall-clock time; hours, minutes and seconds are elapsed time.
        """
        try:
            moved = _add_months(start, self.years * 12 + self.months)
            moved = moved + timedelta(weeks=self.weeks, days=self.days)
            elapsed = timedelta(hours=self.hours, minutes=self.minutes, seconds=self.seconds)
            if elapsed:
                zone = moved.tzinfo
                if zone is not None and moved.utcoffset() is not None:
                    moved = (moved.astimezone(UTC) + elapsed).astimezone(zone)
                else:
                    moved = moved + elapsed
        except (OverflowError, ValueError) as exc:
            raise TimerValueError(
                f"cannot add duration {self.isoformat()!r} to {start.isoformat()!r}: {exc}", self
            ) from None
        return moved

    def total_seconds_approx(self) -> float:
        """Length in seconds, counting a year as 365.2425 days and a month as a twelfth of that."""
        days = self.years * _DAYS_PER_YEAR + self.months * _DAYS_PER_MONTH + self.weeks * 7 + self.days
        return days * _SECONDS_PER_DAY + self.hours * 3600 + self.minutes * 60 + float(self.seconds)

    def isoformat(self) -> str:
        """The duration in ISO 8601 notation (``PT0S`` for an empty duration)."""
        date_part = "".join(
            f"{value}{unit}"
            for value, unit in ((self.years, "Y"), (self.months, "M"), (self.weeks, "W"), (self.days, "D"))
            if value
        )
        seconds = float(self.seconds)
        seconds_text = str(int(seconds)) if seconds.is_integer() else repr(seconds)
        time_part = "".join(
            f"{value}{unit}"
            for value, unit in ((self.hours, "H"), (self.minutes, "M"), (seconds_text, "S"))
            if value and value != "0"
        )
        if not date_part and not time_part:
            return "PT0S"
        return f"P{date_part}" + (f"T{time_part}" if time_part else "")

    def _times(self, factor: int) -> Duration:
        return Duration(
            years=self.years * factor,
            months=self.months * factor,
            weeks=self.weeks * factor,
            days=self.days * factor,
            hours=self.hours * factor,
            minutes=self.minutes * factor,
            seconds=self.seconds * factor,
        )


def _duration_hint(text: str) -> str:
    upper = text.upper()
    if upper.startswith("-") or upper.startswith("P-"):
        return "negative durations are not supported"
    if upper in ("P", "PT"):
        return "a duration needs at least one component, e.g. 'PT5M'"
    if not upper.startswith("P"):
        return "a duration starts with 'P', e.g. 'PT5M' or 'P3D'"
    if "T" not in upper and upper[-1:] in ("H", "S"):
        return "hours, minutes and seconds follow a 'T', e.g. 'PT1H'"
    if "." in upper or "," in upper:
        return "only seconds may have a fraction, e.g. 'PT1.5S'"
    return "expected the form 'PnYnMnWnDTnHnMnS', e.g. 'PT5M', 'P3D' or 'P1Y2M10DT2H30M'"


def parse_duration(text: str) -> Duration:
    """Parse an ISO 8601 duration (``PT5M``, ``P3D``, ``P2W``, ``P1Y2M10DT2H30M``, ``PT1.5S``).

    Lower-case letters are accepted.  Empty (``P``, ``PT``), negative, malformed and absurdly long
    (more than 1000 years) durations raise :class:`TimerValueError`.
    """
    if not isinstance(text, str):
        raise TimerValueError(f"a duration must be a string, got {type(text).__name__}", text)
    value = text.strip()
    match = _DURATION_RE.fullmatch(value)
    if match is None:
        raise TimerValueError(f"invalid ISO 8601 duration {_quote(text)}: {_duration_hint(value)}", text)
    groups = match.groupdict()
    if all(groups[name] is None for name in _DURATION_FIELDS):
        raise TimerValueError(f"invalid ISO 8601 duration {_quote(text)}: {_duration_hint('P')}", text)
    if groups["time"] and all(groups[name] is None for name in ("hours", "minutes", "seconds")):
        raise TimerValueError(
            f"invalid ISO 8601 duration {_quote(text)}: 'T' must be followed by hours, minutes or seconds",
            text,
        )
    numbers: dict[str, int] = {}
    for name in _DURATION_FIELDS[:-1]:
        digits = groups[name]
        if digits is not None and len(digits) > _MAX_DIGITS:
            raise TimerValueError(f"ISO 8601 duration {_quote(text)} is too long", text)
        numbers[name] = int(digits) if digits else 0
    seconds_text = (groups["seconds"] or "0").replace(",", ".")
    if len(seconds_text) > 2 * _MAX_DIGITS:
        raise TimerValueError(f"ISO 8601 duration {_quote(text)} is too long", text)
    seconds = float(seconds_text)
    duration = Duration(seconds=int(seconds) if seconds.is_integer() else seconds, **numbers)
    if duration.total_seconds_approx() > _MAX_SECONDS:
        raise TimerValueError(
            f"ISO 8601 duration {_quote(text)} is too long (more than {_MAX_YEARS} years)", text
        )
    return duration


# --------------------------------------------------------------------------------------------
# Date-times
# --------------------------------------------------------------------------------------------


def _check_zone(default_tz: tzinfo) -> None:
    if not isinstance(default_tz, tzinfo):
        raise TypeError(f"default_tz must be a tzinfo, got {type(default_tz).__name__}")


def _aware(moment: datetime, default_tz: tzinfo) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=default_tz)
    return moment


def _offset(text: str, original: str) -> tzinfo:
    if text.upper() == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:] or "0")
    if hours > 23 or minutes > 59:
        raise TimerValueError(f"invalid UTC offset in date-time {_quote(original)}", original)
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def parse_datetime(text: str, default_tz: tzinfo) -> datetime:
    """Parse an ISO 8601 date or date-time into an aware :class:`datetime`.

    Accepted: ``2027-01-01``, ``2027-01-01T08:00``, ``2027-01-01T08:00:00``,
    ``2027-01-01T08:00:00.250``, each optionally followed by ``Z``, ``+08:00``, ``+0800`` or
    ``+08`` (lower-case ``t``/``z`` too).  Values without an offset are in ``default_tz``; a date
    alone means midnight in ``default_tz``.
    """
    _check_zone(default_tz)
    if not isinstance(text, str):
        raise TimerValueError(f"a date-time must be a string, got {type(text).__name__}", text)
    value = text.strip()
    match = _DATETIME_RE.fullmatch(value)
    if match is None:
        raise TimerValueError(
            f"invalid ISO 8601 date-time {_quote(text)}: expected e.g. '2027-01-01T08:00:00+08:00' "
            "or '2027-01-01'",
            text,
        )
    parts = match.groupdict()
    fraction = (parts["fraction"] or "").ljust(6, "0")[:6]
    try:
        moment = datetime(
            int(parts["year"]),
            int(parts["month"]),
            int(parts["day"]),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
            int(fraction),
        )
    except ValueError as exc:
        raise TimerValueError(f"invalid ISO 8601 date-time {_quote(text)}: {exc}", text) from None
    if parts["offset"]:
        return moment.replace(tzinfo=_offset(parts["offset"], text))
    return moment.replace(tzinfo=default_tz)


# --------------------------------------------------------------------------------------------
# Cycles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cycle:
    """An ISO 8601 repeating interval such as ``R3/PT10M`` or ``R/2027-01-01T00:00:00Z/P1D``."""

    repetitions: int | None  # None = unbounded
    start: datetime | None
    interval: Duration
    end: datetime | None

    def next_after(self, reference: datetime, fired: int) -> datetime | None:
        """Due time of firing number ``fired`` (0-based), or None when the cycle is over.

        ``reference`` is the moment the cycle was armed (the first anchor).  With a start that is
        not before ``reference``, firing *k* is due at ``start + k * interval``; otherwise at
        ``reference + (k + 1) * interval``.  Multiples are computed from the anchor (not by
        repeated addition), so ``R/2027-01-31/P1M`` stays on month ends.  Returns None when
        ``fired`` reaches the number of repetitions or the due time would be after ``end``.
        """
        if isinstance(fired, bool) or not isinstance(fired, int) or fired < 0:
            raise ValueError(f"fired must be a non-negative integer, got {fired!r}")
        if reference.tzinfo is None or reference.utcoffset() is None:
            raise TimerValueError(
                f"reference time {reference.isoformat()!r} must be timezone-aware", reference
            )
        if self.repetitions is not None and fired >= self.repetitions:
            return None
        if self.start is not None and self.start >= reference:
            due = self.interval._times(fired).add_to(self.start)
        else:
            due = self.interval._times(fired + 1).add_to(reference)
        if self.end is not None and due > self.end:
            return None
        return due


def _looks_like_cron(text: str) -> bool:
    return any(char.isspace() for char in text) or "*" in text or "?" in text


def parse_cycle(text: str, default_tz: tzinfo) -> Cycle:
    """Parse ``R[n]/duration``, ``R[n]/start/duration`` or ``R[n]/duration/end``.

    ``R`` without a number repeats without bound.  Cron expressions (``0 0/5 * * * ?``) are
    refused with ``TimerValueError("cron cycles are not supported: ...")``.
    """
    _check_zone(default_tz)
    if not isinstance(text, str):
        raise TimerValueError(f"a cycle must be a string, got {type(text).__name__}", text)
    value = text.strip()
    if _looks_like_cron(value):
        raise TimerValueError(f"cron cycles are not supported: {_quote(text)}", text)
    parts = value.split("/")
    head = _REPEAT_RE.fullmatch(parts[0])
    if head is None or len(parts) not in (2, 3):
        raise TimerValueError(
            f"invalid ISO 8601 repeating interval {_quote(text)}: expected 'R[n]/duration', "
            "'R[n]/start/duration' or 'R[n]/duration/end'",
            text,
        )
    count = head.group("count")
    if count and len(count) > 9:
        raise TimerValueError(f"too many repetitions in cycle {_quote(text)}", text)
    repetitions = int(count) if count else None
    if repetitions is not None and repetitions < 1:
        raise TimerValueError(f"cycle {_quote(text)} must repeat at least once", text)
    start: datetime | None = None
    end: datetime | None = None
    try:
        if len(parts) == 2:
            interval = parse_duration(parts[1])
        elif parts[1][:1].upper() == "P":
            interval = parse_duration(parts[1])
            end = parse_datetime(parts[2], default_tz)
        elif parts[2][:1].upper() == "P":
            start = parse_datetime(parts[1], default_tz)
            interval = parse_duration(parts[2])
        else:
            raise TimerValueError("a cycle needs a duration such as 'PT10M'", text)
    except TimerValueError as exc:
        raise TimerValueError(f"invalid ISO 8601 repeating interval {_quote(text)}: {exc}", text) from None
    if interval.total_seconds_approx() <= 0:
        raise TimerValueError(f"the interval of cycle {_quote(text)} must be longer than zero", text)
    return Cycle(repetitions=repetitions, start=start, interval=interval, end=end)


# --------------------------------------------------------------------------------------------
# Helpers for the engine
# --------------------------------------------------------------------------------------------


def _is_duration(text: str) -> bool:
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        return False
    groups = match.groupdict()
    if all(groups[name] is None for name in _DURATION_FIELDS):
        return False
    return not (groups["time"] and all(groups[name] is None for name in ("hours", "minutes", "seconds")))


def looks_like_iso8601(text: str) -> bool:
    """True when ``text`` has the shape of an ISO 8601 duration, date(-time) or repeating interval.

    Used to tell literal timer values (``PT5M``) from expressions (``${delay}``, ``delay``,
    ``"PT5M"``); it checks the shape only, :func:`parse_duration` & co. validate the values.
    """
    if not isinstance(text, str):
        return False
    value = text.strip()
    if not value:
        return False
    if _is_duration(value) or _DATETIME_RE.fullmatch(value):
        return True
    parts = value.split("/")
    if len(parts) in (2, 3) and _REPEAT_RE.fullmatch(parts[0]):
        return all(_is_duration(part) or _DATETIME_RE.fullmatch(part) for part in parts[1:])
    return False


def resolve_due(
    kind: Literal["date", "duration", "cycle"],
    value: str | datetime | timedelta,
    now: datetime,
    default_tz: tzinfo,
) -> datetime:
    """When a timer of ``kind`` with ``value`` (text or an evaluated expression result) is due.

    * ``date``: the date-time itself (naive values are in ``default_tz``),
    * ``duration``: ``now`` plus the duration (a :class:`timedelta` is accepted too),
    * ``cycle``: the first due time: the start if given and not in the past, else ``now`` plus
      the interval (a :class:`timedelta` is taken as an unbounded cycle interval).

    ``now`` without a time zone is taken to be in ``default_tz``.
    """
    _check_zone(default_tz)
    now = _aware(now, default_tz)
    if kind == "date":
        if isinstance(value, datetime):
            return _aware(value, default_tz)
        if isinstance(value, str):
            return parse_datetime(value, default_tz)
        raise TimerValueError(f"a timer date must be an ISO 8601 date-time, got {_quote(value)}", value)
    if kind == "duration":
        if isinstance(value, timedelta):
            return _after(now, value, value)
        if isinstance(value, str):
            return parse_duration(value).add_to(now)
        raise TimerValueError(f"a timer duration must be an ISO 8601 duration, got {_quote(value)}", value)
    if kind == "cycle":
        if isinstance(value, timedelta):
            return _after(now, value, value, strictly_positive=True)
        if isinstance(value, str):
            due = parse_cycle(value, default_tz).next_after(now, 0)
            if due is None:
                raise TimerValueError(f"cycle {_quote(value)} has already ended", value)
            return due
        raise TimerValueError(
            f"a timer cycle must be an ISO 8601 repeating interval, got {_quote(value)}", value
        )
    raise TimerValueError(f"unknown timer kind {kind!r}; expected 'date', 'duration' or 'cycle'", kind)


def _after(now: datetime, delta: timedelta, value: object, *, strictly_positive: bool = False) -> datetime:
    if delta < timedelta(0) or (strictly_positive and not delta):
        raise TimerValueError(f"a timer interval must be positive, got {_quote(value)}", value)
    try:
        return now + delta
    except OverflowError:
        raise TimerValueError(f"timer duration {_quote(value)} is too long", value) from None
