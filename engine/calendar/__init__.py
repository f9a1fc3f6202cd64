"""The business calendar: Chinese working days and statutory deadlines (see :mod:`engine.calendar.core`)."""

from engine.calendar.core import (
    CALENDAR_KINDS,
    SHANGHAI,
    BusinessCalendar,
    CalendarError,
    Deadline,
    UnknownCalendarYear,
    estimated_note,
)
from engine.calendar.files import CalendarFileError, load_calendar, read_calendar_file

__all__ = [
    "CALENDAR_KINDS",
    "SHANGHAI",
    "BusinessCalendar",
    "CalendarError",
    "CalendarFileError",
    "Deadline",
    "UnknownCalendarYear",
    "estimated_note",
    "load_calendar",
    "read_calendar_file",
]
