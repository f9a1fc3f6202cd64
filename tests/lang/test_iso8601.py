"""Tests for engine.lang.iso8601: timer durations, dates and cycles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from engine.lang.iso8601 import (
    Cycle,
    Duration,
    TimerValueError,
    looks_like_iso8601,
    parse_cycle,
    parse_datetime,
    parse_duration,
    resolve_due,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
PLUS8 = timezone(timedelta(hours=8))


def sh(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=SHANGHAI)


# --------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT5M", Duration(minutes=5)),
        ("P3D", Duration(days=3)),
        ("P1Y2M10DT2H30M", Duration(years=1, months=2, days=10, hours=2, minutes=30)),
        ("P2W", Duration(weeks=2)),
        ("PT10S", Duration(seconds=10)),
        ("PT1.5S", Duration(seconds=1.5)),
        ("PT0,25S", Duration(seconds=0.25)),
        ("PT1H", Duration(hours=1)),
        ("P1M", Duration(months=1)),
        ("P1MT1M", Duration(months=1, minutes=1)),
        ("PT0S", Duration()),
        ("P1Y", Duration(years=1)),
        ("pt5m", Duration(minutes=5)),
        ("p1y2m10dt2h30m", Duration(years=1, months=2, days=10, hours=2, minutes=30)),
        ("  PT5M \n", Duration(minutes=5)),
        ("P1000Y", Duration(years=1000)),
    ],
)
def test_parse_duration(text: str, expected: Duration) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("P", "at least one component"),
        ("PT", "at least one component"),
        ("P1H", "follow a 'T'"),
        ("P1S", "follow a 'T'"),
        ("-P1D", "negative"),
        ("P-1D", "negative"),
        ("PT-5M", "invalid ISO 8601 duration"),
        ("garbage", "starts with 'P'"),
        ("", "starts with 'P'"),
        ("5 minutes", "starts with 'P'"),
        ("PT1.5H", "only seconds may have a fraction"),
        ("P1D2Y", "invalid ISO 8601 duration"),
        ("P1DT", "'T' must be followed"),
        ("PT5M ago", "invalid ISO 8601 duration"),
        ('"PT5M"', "invalid ISO 8601 duration"),
        ("P1001Y", "more than 1000 years"),
        ("PT9999999999H", "more than 1000 years"),
        ("P99999999999999999999D", "too long"),
        ("PT" + "9" * 40 + "S", "too long"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(TimerValueError) as info:
        parse_duration(text)
    assert message in str(info.value)
    assert repr(text.strip())[:30] in str(info.value) or "too long" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_duration_requires_text() -> None:
    with pytest.raises(TimerValueError, match="must be a string"):
        parse_duration(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        (sh(2027, 1, 31, 9, 0), "P1M", sh(2027, 2, 28, 9, 0)),
        (sh(2028, 1, 31, 9, 0), "P1M", sh(2028, 2, 29, 9, 0)),
        (sh(2027, 3, 31, 9, 0), "P1M", sh(2027, 4, 30, 9, 0)),
        (sh(2027, 1, 31, 9, 0), "P2M", sh(2027, 3, 31, 9, 0)),
        (sh(2027, 12, 15), "P1M", sh(2028, 1, 15)),
        (sh(2027, 11, 30), "P14M", sh(2029, 1, 30)),
        (sh(2028, 2, 29), "P1Y", sh(2029, 2, 28)),
        (sh(2028, 2, 29), "P4Y", sh(2032, 2, 29)),
        (sh(2027, 1, 1), "P1Y2M10DT2H30M", sh(2028, 3, 11, 2, 30)),
        (sh(2027, 1, 1, 23, 0), "PT2H", sh(2027, 1, 2, 1, 0)),
        (sh(2027, 1, 1), "P2W", sh(2027, 1, 15)),
        (sh(2027, 1, 1), "PT1.5S", sh(2027, 1, 1, 0, 0, 1) + timedelta(milliseconds=500)),
        (datetime(2027, 1, 31, tzinfo=UTC), "P1MT1H", datetime(2027, 2, 28, 1, tzinfo=UTC)),
        (datetime(2027, 1, 31), "P1DT1H", datetime(2027, 2, 1, 1)),
    ],
)
def test_duration_add_to(start: datetime, duration: str, expected: datetime) -> None:
    result = parse_duration(duration).add_to(start)
    assert result == expected
    assert result.tzinfo is start.tzinfo


def test_duration_add_to_across_dst() -> None:
    # Calendar days keep the wall-clock time; hours are elapsed time (Berlin switches on 2027-03-28).
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2027, 3, 27, 12, 0, tzinfo=berlin)
    assert parse_duration("P1D").add_to(start) == datetime(2027, 3, 28, 12, 0, tzinfo=berlin)
    assert parse_duration("PT24H").add_to(start) == datetime(2027, 3, 28, 13, 0, tzinfo=berlin)


def test_duration_add_to_overflow() -> None:
    with pytest.raises(TimerValueError, match="cannot add duration 'P1000Y'"):
        parse_duration("P1000Y").add_to(sh(9000, 1, 1))


def test_duration_total_seconds_approx() -> None:
    assert parse_duration("PT5M").total_seconds_approx() == 300
    assert parse_duration("P1DT1H1M1.5S").total_seconds_approx() == 86400 + 3600 + 60 + 1.5
    assert parse_duration("P2W").total_seconds_approx() == 14 * 86400
    assert parse_duration("P1Y").total_seconds_approx() == pytest.approx(365.2425 * 86400)
    assert parse_duration("P1M").total_seconds_approx() == pytest.approx(365.2425 * 86400 / 12)
    assert Duration().total_seconds_approx() == 0


@pytest.mark.parametrize("text", ["PT5M", "P3D", "P1Y2M10DT2H30M", "P2W", "PT1.5S", "PT0S", "P1MT1M"])
def test_duration_isoformat_round_trip(text: str) -> None:
    assert parse_duration(text).isoformat() == text
    assert parse_duration(parse_duration(text).isoformat()) == parse_duration(text)


def test_duration_is_frozen() -> None:
    duration = Duration(minutes=5)
    with pytest.raises(AttributeError):
        duration.minutes = 6  # type: ignore[misc]
    assert hash(duration) == hash(Duration(minutes=5))


# --------------------------------------------------------------------------------------------
# Date-times
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-01T00:00:00Z", datetime(2027, 1, 1, tzinfo=UTC)),
        ("2027-01-01T00:00:00z", datetime(2027, 1, 1, tzinfo=UTC)),
        ("2027-01-01T00:00:00+08:00", datetime(2027, 1, 1, tzinfo=PLUS8)),
        ("2027-01-01T00:00:00+0800", datetime(2027, 1, 1, tzinfo=PLUS8)),
        ("2027-01-01T00:00:00+08", datetime(2027, 1, 1, tzinfo=PLUS8)),
        ("2027-01-01T00:00:00-05:30", datetime(2027, 1, 1, tzinfo=timezone(-timedelta(hours=5, minutes=30)))),
        ("2027-01-01T08:00", sh(2027, 1, 1, 8, 0)),
        ("2027-01-01t08:00:30", sh(2027, 1, 1, 8, 0, 30)),
        ("2027-01-01T08:00:30.25", sh(2027, 1, 1, 8, 0, 30, 250000)),
        ("2027-01-01T08:00:30,123456789Z", datetime(2027, 1, 1, 8, 0, 30, 123456, tzinfo=UTC)),
        ("2027-01-01", sh(2027, 1, 1)),
        (" 2027-06-15 ", sh(2027, 6, 15)),
    ],
)
def test_parse_datetime(text: str, expected: datetime) -> None:
    result = parse_datetime(text, SHANGHAI)
    assert result == expected
    assert result.utcoffset() == expected.utcoffset()


def test_parse_datetime_is_aware_in_the_default_zone() -> None:
    result = parse_datetime("2027-01-01T08:00", SHANGHAI)
    assert result.tzinfo is SHANGHAI
    assert result.astimezone(UTC) == datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
    midnight = parse_datetime("2027-01-01", SHANGHAI)
    assert midnight.tzinfo is SHANGHAI
    assert (midnight.hour, midnight.minute) == (0, 0)
    assert parse_datetime("2027-01-01", UTC) == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2027-02-30", "day is out of range"),
        ("2027-13-01", "month must be in 1..12"),
        ("2027-01-01T24:00", "hour must be in 0..23"),
        ("2027-01-01T08:60", "minute must be in 0..59"),
        ("2027-01-01T08:00+25:00", "invalid UTC offset"),
        ("2027-1-1", "invalid ISO 8601 date-time"),
        ("2027-01-01 08:00", "invalid ISO 8601 date-time"),
        ("20270101T080000Z", "invalid ISO 8601 date-time"),
        ("2027-01-01Z", "invalid ISO 8601 date-time"),
        ("tomorrow", "invalid ISO 8601 date-time"),
        ("PT5M", "invalid ISO 8601 date-time"),
        ("", "invalid ISO 8601 date-time"),
    ],
)
def test_parse_datetime_rejects(text: str, message: str) -> None:
    with pytest.raises(TimerValueError) as info:
        parse_datetime(text, SHANGHAI)
    assert message in str(info.value)
    assert repr(text) in str(info.value)


def test_parse_datetime_requires_a_zone() -> None:
    with pytest.raises(TypeError):
        parse_datetime("2027-01-01", "Asia/Shanghai")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Cycles
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("R3/PT10M", Cycle(3, None, Duration(minutes=10), None)),
        ("R/PT10M", Cycle(None, None, Duration(minutes=10), None)),
        ("R/PT1H", Cycle(None, None, Duration(hours=1), None)),
        ("r3/pt10m", Cycle(3, None, Duration(minutes=10), None)),
        (
            "R5/2027-01-01T00:00:00Z/P1D",
            Cycle(5, datetime(2027, 1, 1, tzinfo=UTC), Duration(days=1), None),
        ),
        ("R2/2027-01-01T08:00/PT1H", Cycle(2, sh(2027, 1, 1, 8, 0), Duration(hours=1), None)),
        (
            "R3/PT10M/2027-01-01T00:00:00+08:00",
            Cycle(3, None, Duration(minutes=10), datetime(2027, 1, 1, tzinfo=PLUS8)),
        ),
        ("R/P1M/2028-01-01", Cycle(None, None, Duration(months=1), sh(2028, 1, 1))),
    ],
)
def test_parse_cycle(text: str, expected: Cycle) -> None:
    assert parse_cycle(text, SHANGHAI) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 0/5 * * * ?", "cron cycles are not supported: '0 0/5 * * * ?'"),
        ("0 0 12 * * MON-FRI", "cron cycles are not supported"),
        ("*/5", "cron cycles are not supported"),
        ("PT10M", "invalid ISO 8601 repeating interval"),
        ("R3", "invalid ISO 8601 repeating interval"),
        ("R3/PT10M/2027-01-01/PT1M", "invalid ISO 8601 repeating interval"),
        ("Rx/PT10M", "invalid ISO 8601 repeating interval"),
        ("R-1/PT10M", "invalid ISO 8601 repeating interval"),
        ("R0/PT10M", "must repeat at least once"),
        ("R3/PT0S", "must be longer than zero"),
        ("R3/P1H", "follow a 'T'"),
        ("R3/2027-01-01/2027-02-01", "needs a duration"),
        ("R3/2027-02-30/P1D", "day is out of range"),
        ("R3/2027-02-01/P1D/2027-01-01", "invalid ISO 8601 repeating interval"),
        ("R9999999999/PT1M", "too many repetitions"),
    ],
)
def test_parse_cycle_rejects(text: str, message: str) -> None:
    with pytest.raises(TimerValueError) as info:
        parse_cycle(text, SHANGHAI)
    assert message in str(info.value)


def test_cycle_ending_before_its_start_never_fires() -> None:
    cycle = Cycle(3, sh(2027, 2, 1), Duration(days=1), sh(2027, 1, 1))
    assert cycle.next_after(sh(2026, 1, 1), 0) is None


def test_cycle_without_start_counts_from_the_reference() -> None:
    cycle = parse_cycle("R3/PT10M", SHANGHAI)
    armed = sh(2027, 1, 1, 8, 0)
    assert [cycle.next_after(armed, fired) for fired in range(4)] == [
        sh(2027, 1, 1, 8, 10),
        sh(2027, 1, 1, 8, 20),
        sh(2027, 1, 1, 8, 30),
        None,
    ]


def test_unbounded_cycle_never_runs_out() -> None:
    cycle = parse_cycle("R/PT1H", SHANGHAI)
    armed = sh(2027, 1, 1)
    assert cycle.next_after(armed, 999) == armed + timedelta(hours=1000)


def test_cycle_with_future_start() -> None:
    cycle = parse_cycle("R5/2027-01-01T00:00:00Z/P1D", SHANGHAI)
    armed = sh(2026, 12, 1)
    assert cycle.next_after(armed, 0) == datetime(2027, 1, 1, tzinfo=UTC)
    assert cycle.next_after(armed, 4) == datetime(2027, 1, 5, tzinfo=UTC)
    assert cycle.next_after(armed, 5) is None


def test_cycle_with_past_start_counts_from_the_reference() -> None:
    cycle = parse_cycle("R/2020-01-01T00:00:00Z/P1D", SHANGHAI)
    armed = sh(2027, 1, 1, 12, 0)
    assert cycle.next_after(armed, 0) == sh(2027, 1, 2, 12, 0)


def test_cycle_stops_at_end() -> None:
    cycle = parse_cycle("R/PT10M/2027-01-01T08:25:00+08:00", SHANGHAI)
    armed = sh(2027, 1, 1, 8, 0)
    assert cycle.next_after(armed, 0) == sh(2027, 1, 1, 8, 10)
    assert cycle.next_after(armed, 1) == sh(2027, 1, 1, 8, 20)
    assert cycle.next_after(armed, 2) is None


def test_cycle_keeps_month_ends() -> None:
    cycle = parse_cycle("R/2027-01-31T09:00/P1M", SHANGHAI)
    armed = sh(2027, 1, 1)
    assert [cycle.next_after(armed, fired) for fired in range(4)] == [
        sh(2027, 1, 31, 9, 0),
        sh(2027, 2, 28, 9, 0),
        sh(2027, 3, 31, 9, 0),
        sh(2027, 4, 30, 9, 0),
    ]


@pytest.mark.parametrize("fired", [-1, 1.5, True])
def test_cycle_rejects_bad_counts(fired: Any) -> None:
    with pytest.raises(ValueError):
        parse_cycle("R/PT1H", SHANGHAI).next_after(sh(2027, 1, 1), fired)


def test_cycle_requires_an_aware_reference() -> None:
    with pytest.raises(TimerValueError, match="timezone-aware"):
        parse_cycle("R/PT1H", SHANGHAI).next_after(datetime(2027, 1, 1), 0)


# --------------------------------------------------------------------------------------------
# looks_like_iso8601
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "PT5M",
        "P3D",
        "P1Y2M10DT2H30M",
        "P2W",
        "R3/PT10M",
        "R/PT1H",
        "R5/2027-01-01T00:00:00Z/P1D",
        "R3/PT10M/2027-01-01T00:00:00Z",
        "2027-01-01T00:00:00+08:00",
        "2027-01-01",
        "2027-01-01T08:00",
        "pt5m",
        "p3d",
        "r3/pt10m",
        "r5/2027-01-01t00:00:00z/p1d",
        "2027-01-01t08:00",
        " PT5M ",
    ],
)
def test_looks_like_iso8601(text: str) -> None:
    assert looks_like_iso8601(text) is True


@pytest.mark.parametrize(
    "text",
    [
        '"PT5M"',
        "'PT5M'",
        "${x}",
        "${delay}",
        "#{delay}",
        "delay",
        "amount > 3",
        "P",
        "PT",
        "",
        "   ",
        "R3",
        "R3/",
        "R3/delay",
        "0 0/5 * * * ?",
        "timedelta(minutes=5)",
        "PT5M + x",
        "Period",
        "Rx/PT1M",
    ],
)
def test_does_not_look_like_iso8601(text: str) -> None:
    assert looks_like_iso8601(text) is False


def test_looks_like_iso8601_non_string() -> None:
    assert looks_like_iso8601(None) is False  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# resolve_due
# --------------------------------------------------------------------------------------------

NOW = sh(2027, 1, 31, 9, 0)


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("date", "2027-03-01T10:00:00+08:00", datetime(2027, 3, 1, 10, tzinfo=PLUS8)),
        ("date", "2027-03-01", sh(2027, 3, 1)),
        ("date", datetime(2027, 3, 1, 10), sh(2027, 3, 1, 10)),
        ("date", datetime(2027, 3, 1, 10, tzinfo=UTC), datetime(2027, 3, 1, 10, tzinfo=UTC)),
        ("duration", "PT5M", sh(2027, 1, 31, 9, 5)),
        ("duration", "P1M", sh(2027, 2, 28, 9, 0)),
        ("duration", timedelta(hours=2), sh(2027, 1, 31, 11, 0)),
        ("duration", timedelta(0), NOW),
        ("cycle", "R3/PT10M", sh(2027, 1, 31, 9, 10)),
        ("cycle", "R/PT1H", sh(2027, 1, 31, 10, 0)),
        ("cycle", "R5/2027-02-01T00:00:00Z/P1D", datetime(2027, 2, 1, tzinfo=UTC)),
        ("cycle", "R5/2027-01-01T00:00:00Z/P1D", sh(2027, 2, 1, 9, 0)),
        ("cycle", timedelta(minutes=15), sh(2027, 1, 31, 9, 15)),
    ],
)
def test_resolve_due(kind: Any, value: Any, expected: datetime) -> None:
    result = resolve_due(kind, value, NOW, SHANGHAI)
    assert result == expected
    assert result.tzinfo is not None


def test_resolve_due_with_naive_now() -> None:
    assert resolve_due("duration", "PT5M", datetime(2027, 1, 1, 8, 0), SHANGHAI) == sh(2027, 1, 1, 8, 5)


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("date", "PT5M", "invalid ISO 8601 date-time"),
        ("date", timedelta(hours=1), "must be an ISO 8601 date-time"),
        ("duration", "2027-01-01", "invalid ISO 8601 duration"),
        ("duration", timedelta(hours=-1), "must be positive"),
        ("duration", datetime(2027, 1, 1), "must be an ISO 8601 duration"),
        ("cycle", "0 0/5 * * * ?", "cron cycles are not supported"),
        ("cycle", "R3/PT10M/2027-01-01T00:00:00Z", "has already ended"),
        ("cycle", timedelta(0), "must be positive"),
        ("cycle", datetime(2027, 1, 1), "must be an ISO 8601 repeating interval"),
        ("sometimes", "PT5M", "unknown timer kind 'sometimes'"),
    ],
)
def test_resolve_due_rejects(kind: Any, value: Any, message: str) -> None:
    with pytest.raises(TimerValueError) as info:
        resolve_due(kind, value, NOW, SHANGHAI)
    assert message in str(info.value)


def test_resolve_due_overflow() -> None:
    with pytest.raises(TimerValueError, match="too long"):
        resolve_due("duration", timedelta(days=999_999_999), NOW, SHANGHAI)
