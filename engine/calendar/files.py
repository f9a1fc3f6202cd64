"""Local calendar files: ``deployments/calendar/*.yaml`` (directory set by ``CASEFLOW_CALENDAR_DIR``).

One file per year, transcribing the State Council's notice for that year::

    year: 2027
    source: 国务院办公厅关于2027年部分节假日安排的通知（国办发明电〔2026〕N号，2026年11月N日）
    holidays:                      # rest days, each entry with a name and a date, a list or a range
      - {name: 元旦, date: 2027-01-01}
      - {name: 春节, from: 2027-02-06, to: 2027-02-13}
      - {name: 清明节, dates: [2027-04-05]}
    workdays:                      # adjusted working weekend days (调休上班)
      - {name: 春节, date: 2027-02-14}

Rules: ``year`` and ``source`` are required (a file whose origin cannot be stated must not be loaded); every
date lies in ``year``; a date is either a holiday or a working day, never both; one file per year; unknown keys
are refused. Loading a file makes its year *known*: its other days follow Monday–Friday. A file for a year
chinese-calendar already knows corrects the dates it names and leaves the rest of the package's year alone.
Only ``*.yaml`` / ``*.yml`` are read: templates such as ``2027.yaml.example`` are ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

from engine.calendar.core import BusinessCalendar, CalendarError

log = logging.getLogger("caseflow.calendar")

_TOP_KEYS = {"year", "source", "holidays", "workdays"}
_ENTRY_KEYS = {"name", "date", "dates", "from", "to"}
_MAX_RANGE = 31


class CalendarFileError(CalendarError):
    """A calendar file that cannot be used; the message names the file and the entry."""


@dataclass
class CalendarFile:
    path: str
    year: int
    source: str
    holidays: dict[date, str] = field(default_factory=dict)
    workdays: dict[date, str] = field(default_factory=dict)


def _date(value: Any, where: str) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise CalendarFileError(f"{where}: {value!r} is not a date (write YYYY-MM-DD)")


def _entries(raw: Any, section: str, path: str, year: int) -> dict[date, str]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise CalendarFileError(f"{path}: '{section}' must be a list of entries")
    found: dict[date, str] = {}
    for index, entry in enumerate(raw, start=1):
        where = f"{path}: {section} entry {index}"
        if not isinstance(entry, dict):
            raise CalendarFileError(f"{where} must be a mapping with a name and a date, dates or from/to")
        unknown = sorted(str(k) for k in entry if k not in _ENTRY_KEYS)
        if unknown:
            raise CalendarFileError(f"{where}: unknown key(s) {', '.join(unknown)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CalendarFileError(f"{where} needs a name (e.g. 春节)")
        where = f"{where} ({name})"
        days: list[date] = []
        given = [k for k in ("date", "dates", "from") if k in entry]
        if len(given) != 1 or ("to" in entry) != ("from" in entry):
            raise CalendarFileError(f"{where}: give exactly one of date, dates, or from together with to")
        if "date" in entry:
            days.append(_date(entry["date"], where))
        elif "dates" in entry:
            if not isinstance(entry["dates"], list) or not entry["dates"]:
                raise CalendarFileError(f"{where}: dates must be a non-empty list")
            days.extend(_date(v, where) for v in entry["dates"])
        else:
            first, last = _date(entry["from"], where), _date(entry["to"], where)
            if last < first:
                raise CalendarFileError(f"{where}: 'to' {last} is before 'from' {first}")
            if (last - first).days >= _MAX_RANGE:
                raise CalendarFileError(f"{where}: a range of more than {_MAX_RANGE} days is not a holiday")
            days.extend(first + timedelta(days=n) for n in range((last - first).days + 1))
        for day in days:
            if day.year != year:
                raise CalendarFileError(f"{where}: {day} is not in {year}; put it in that year's file")
            if day in found:
                raise CalendarFileError(f"{where}: {day} is listed twice")
            found[day] = name.strip()
    return found


def read_calendar_file(path: str | Path) -> CalendarFile:
    where = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: a date such as 2031-02-30
        raise CalendarFileError(f"{where}: cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise CalendarFileError(f"{where}: expected a mapping with year, source, holidays and workdays")
    unknown = sorted(str(k) for k in data if k not in _TOP_KEYS)
    if unknown:
        raise CalendarFileError(f"{where}: unknown key(s) {', '.join(unknown)}")
    year = data.get("year")
    if not isinstance(year, int) or isinstance(year, bool) or not 1900 <= year <= 2200:
        raise CalendarFileError(f"{where}: 'year' must be a year such as 2027")
    source = data.get("source")
    if not isinstance(source, str) or not source.strip():
        raise CalendarFileError(
            f"{where}: 'source' is required: name the notice the arrangement comes from (国办发明电…)"
        )
    holidays = _entries(data.get("holidays"), "holidays", where, year)
    workdays = _entries(data.get("workdays"), "workdays", where, year)
    both = sorted(set(holidays) & set(workdays))
    if both:
        raise CalendarFileError(f"{where}: {both[0]} is both a holiday and a working day")
    return CalendarFile(where, year, source.strip(), holidays, workdays)


def load_calendar(directory: str | Path | None) -> BusinessCalendar:
    """chinese-calendar plus every ``*.yaml``/``*.yml`` file of ``directory`` (missing directory: package only)."""
    if directory is None:
        return BusinessCalendar()
    folder = Path(directory)
    if not folder.is_dir():
        log.warning(
            "no local calendar files: %s is not a directory (CASEFLOW_CALENDAR_DIR)", folder.resolve()
        )
        return BusinessCalendar()
    holidays: dict[date, str] = {}
    workdays: dict[date, str] = {}
    years: dict[int, str] = {}
    by_year: dict[int, str] = {}
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
    for path in paths:
        parsed = read_calendar_file(path)
        if parsed.year in by_year:
            raise CalendarFileError(f"{path}: {parsed.year} is already described by {by_year[parsed.year]}")
        by_year[parsed.year] = str(path)
        years[parsed.year] = parsed.source
        holidays.update(parsed.holidays)
        workdays.update(parsed.workdays)
        log.info("calendar %s loaded from %s (source: %s)", parsed.year, path, parsed.source)
    return BusinessCalendar(holidays, workdays, years)
