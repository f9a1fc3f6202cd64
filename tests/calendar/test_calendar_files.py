"""Local calendar files (deployments/calendar/*.yaml): a synthetic year, corrections, and refusals."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from engine.app import _calendar
from engine.calendar import SHANGHAI, CalendarFileError, load_calendar, read_calendar_file
from engine.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]

# A made-up arrangement for 2031 (no such notice exists): what a transcribed notice looks like.
SYNTHETIC_2031 = """\
year: 2031
source: 测试用虚构安排（not an official notice）
holidays:
  - {name: 元旦, date: 2031-01-01}
  - name: 春节
    from: 2031-01-22
    to: 2031-01-28
  - {name: 清明节, dates: [2031-04-05, 2031-04-06, 2031-04-07]}
workdays:
  - {name: 春节, date: 2031-01-19}
  - {name: 春节, date: 2031-02-08}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_synthetic_year_from_a_file_is_known_and_counted(tmp_path: Path) -> None:
    write(tmp_path, "2031.yaml", SYNTHETIC_2031)
    calendar = load_calendar(tmp_path)
    assert (
        calendar.knows(date(2031, 6, 1))
        and calendar.source(2031) == "测试用虚构安排（not an official notice）"
    )
    assert not calendar.is_working_day(date(2031, 1, 22))  # a Wednesday in the holiday range
    assert calendar.is_working_day(date(2031, 1, 19))  # a Sunday made a working day
    assert calendar.day_info(date(2031, 1, 25)).name == "春节"
    # Friday 2031-01-17 + 3 working days: Sunday 01-19 (1), Monday 01-20 (2), Tuesday 01-21 (3).
    deadline = calendar.add_working_days(datetime(2031, 1, 17, 10, tzinfo=SHANGHAI), 3)
    assert deadline.last_day == date(2031, 1, 21) and not deadline.estimated
    # Tuesday 01-21 + 1: 01-22..28 off, Wednesday 01-29.
    assert calendar.add_working_days(datetime(2031, 1, 21, 10, tzinfo=SHANGHAI), 1).last_day == date(
        2031, 1, 29
    )
    # The year after is still unknown.
    assert calendar.add_working_days(datetime(2031, 12, 31, 10, tzinfo=SHANGHAI), 1).unknown_years == (2032,)


def test_a_file_corrects_single_dates_of_a_package_year(tmp_path: Path) -> None:
    write(
        tmp_path,
        "2026-fix.yml",
        "year: 2026\nsource: 更正测试\nholidays:\n  - {name: 临时休假, date: 2026-10-09}\n",
    )
    calendar = load_calendar(tmp_path)
    assert not calendar.is_working_day(date(2026, 10, 9))
    assert calendar.is_working_day(date(2026, 10, 10))  # the package's other dates stand


def test_templates_and_other_files_are_not_loaded(tmp_path: Path) -> None:
    write(tmp_path, "2031.yaml.example", SYNTHETIC_2031)
    write(tmp_path, "README.md", "notes")
    calendar = load_calendar(tmp_path)
    assert not calendar.knows(date(2031, 1, 1))


def test_the_shipped_directory_has_no_2027_data() -> None:
    folder = REPO / "deployments" / "calendar"
    assert (folder / "2027.yaml.example").is_file()
    calendar = load_calendar(folder)
    assert not calendar.knows(date(2027, 1, 1))
    assert calendar.add_working_days(datetime(2026, 12, 30, tzinfo=SHANGHAI), 3).unknown_years == (2027,)


def test_the_template_filled_in_only_by_renaming_is_refused(tmp_path: Path) -> None:
    template = (REPO / "deployments" / "calendar" / "2027.yaml.example").read_text(encoding="utf-8")
    write(tmp_path, "2027.yaml", template)
    with pytest.raises(CalendarFileError, match="'source' is required"):
        load_calendar(tmp_path)


def test_a_missing_directory_means_the_package_alone(tmp_path: Path) -> None:
    calendar = load_calendar(tmp_path / "nowhere")
    assert calendar.knows(date(2026, 1, 1)) and not calendar.knows(date(2027, 1, 1))


BAD = [
    pytest.param("source: x\nholidays: []\n", "'year' must be a year", id="no-year"),
    pytest.param("year: 2031\nholidays: []\n", "'source' is required", id="no-source"),
    pytest.param("year: 2031\nsource: x\nextra: 1\n", "unknown key", id="unknown-top-key"),
    pytest.param(
        "year: 2031\nsource: x\nholidays:\n  - {name: a, date: 2030-12-31}\n", "not in 2031", id="other-year"
    ),
    pytest.param(
        "year: 2031\nsource: x\nholidays:\n  - {name: a, date: 2031-02-30}\n", "out of range", id="bad-date"
    ),
    pytest.param(
        "year: 2031\nsource: x\nholidays:\n  - {name: a, from: 2031-02-05, to: 2031-02-01}\n",
        "before",
        id="reversed-range",
    ),
    pytest.param(
        "year: 2031\nsource: x\nholidays:\n  - {name: a, from: 2031-02-01}\n", "exactly one", id="open-range"
    ),
    pytest.param("year: 2031\nsource: x\nholidays:\n  - {date: 2031-02-01}\n", "needs a name", id="no-name"),
    pytest.param(
        "year: 2031\nsource: x\nholidays:\n  - {name: a, date: 2031-02-01, when: now}\n",
        "unknown key",
        id="unknown-entry-key",
    ),
    pytest.param(
        "year: 2031\nsource: x\nholidays:\n  - {name: a, date: 2031-02-01}\n"
        "workdays:\n  - {name: b, date: 2031-02-01}\n",
        "both a holiday and a working day",
        id="both",
    ),
    pytest.param(
        "year: 2031\nsource: x\nholidays:\n  - {name: a, date: 2031-02-01}\n  - {name: b, date: 2031-02-01}\n",
        "listed twice",
        id="twice",
    ),
    pytest.param("year: 2031\nsource: x\nholidays: {a: 1}\n", "must be a list", id="not-a-list"),
    pytest.param("- 1\n- 2\n", "expected a mapping", id="not-a-mapping"),
    pytest.param(
        "year: 2031\nsource: x\nholidays:\n  - {name: a, date: 'Feb 1'}\n", "not a date", id="text-date"
    ),
    pytest.param("year: [\n", "cannot be read", id="broken-yaml"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_files_are_refused_naming_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "2031.yaml", text)
    with pytest.raises(CalendarFileError, match=message) as caught:
        read_calendar_file(path)
    assert str(path) in str(caught.value)


def test_two_files_for_one_year_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", SYNTHETIC_2031)
    write(tmp_path, "b.yaml", SYNTHETIC_2031)
    with pytest.raises(CalendarFileError, match="already described"):
        load_calendar(tmp_path)


def test_settings_read_the_calendar_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CASEFLOW_CALENDAR_DIR", raising=False)
    assert Settings.from_env().calendar_dir == "deployments/calendar"
    monkeypatch.setenv("CASEFLOW_CALENDAR_DIR", str(tmp_path))
    assert Settings.from_env().calendar_dir == str(tmp_path)
    write(tmp_path, "2031.yaml", SYNTHETIC_2031)
    assert _calendar(Settings(calendar_dir=str(tmp_path))).knows(date(2031, 1, 1))
    write(tmp_path, "bad.yaml", "year: 2032\n")
    with pytest.raises(SettingsError, match="CASEFLOW_CALENDAR_DIR"):
        _calendar(Settings(calendar_dir=str(tmp_path)))
