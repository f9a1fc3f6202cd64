"""The users directory: the demo file and what a broken file is told."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from engine.app import load_users
from engine.directory import (
    CASE_SUPERVISION,
    Directory,
    DirectoryError,
    load_directory,
    parse_directory,
)
from engine.settings import Settings, SettingsError
from tests.access.conftest import USERS_FILE

TODAY = date(2026, 3, 2)


def test_demo_users_cover_the_roles_that_gate_steps(directory: Directory) -> None:
    users = list(directory)
    assert len(users) >= 20
    certified = [u for u in users if u.certificate and u.certificate.valid_on(TODAY)]
    expired = [u for u in users if u.certificate and not u.certificate.valid_on(TODAY)]
    clerks = [u for u in users if "staff" in u.roles and u.certificate is None]
    assert len(certified) >= 5 and [u.id for u in expired] == ["wangqiang"] and clerks
    assert all(u.legal_qualification for u in users if "legal_reviewer" in u.roles)
    groups = set().union(*(u.groups for u in users))
    for group in (
        "justice_bureau:supervisor",
        "justice_bureau:coordinator",
        "government:head",
        CASE_SUPERVISION,
        "market_regulation:officer",
        "market_regulation:legal_reviewer",
        "market_regulation:head",
    ):
        assert group in groups, group
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in u.name) for u in users)  # Chinese names


def test_a_user_s_groups_are_agency_and_role(directory: Directory) -> None:
    head = directory.get("zhaomin")
    assert head is not None
    assert head.groups == {"market_regulation:head", "market_regulation:officer"}
    assert head.missing(["certified_officer", "head", "legal_qualification"], TODAY) == [
        "legal_qualification"
    ]
    viewer = directory.viewer("caoyun")
    assert viewer.sees_all_confidential and viewer.agency == "discipline_commission"
    assert directory.viewer("nobody").groups == frozenset()


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"name": "张三", "agency": "x"}, "'id' must be a non-empty text"),
        ({"id": "a", "name": "张三", "agency": "x", "roles": ["wizard"]}, "unknown role 'wizard'"),
        ({"id": "a", "name": "张三", "agency": "nowhere"}, "agency 'nowhere' is not in the agencies file"),
        (
            {"id": "a", "name": "张三", "agency": "x", "certificate": {"number": "1", "valid_until": "soon"}},
            "valid_until must be a date",
        ),
        ({"id": "a", "name": "张三", "agency": "x", "groups": ["nogroup"]}, "'<agency>:<role>'"),
    ],
)
def test_a_broken_entry_is_named(entry: dict[str, object], problem: str) -> None:
    with pytest.raises(DirectoryError, match="test") as refused:
        parse_directory({"users": [entry]}, "test", agencies={"x"})
    assert problem in str(refused.value)


def test_duplicate_ids_and_bad_files_are_refused(tmp_path: Path) -> None:
    twice = {"users": [{"id": "a", "name": "甲", "agency": "x"}, {"id": "a", "name": "乙", "agency": "x"}]}
    with pytest.raises(DirectoryError, match="appears twice"):
        parse_directory(twice, "test")
    broken = tmp_path / "users.yaml"
    broken.write_text("users: [unclosed", encoding="utf-8")
    with pytest.raises(DirectoryError, match="not valid YAML"):
        load_directory(broken)
    with pytest.raises(DirectoryError, match="cannot be read"):
        load_directory(tmp_path / "missing.yaml")


def test_settings_choose_the_users_file(tmp_path: Path) -> None:
    assert load_users(Settings(users_file=str(USERS_FILE))) is not None
    assert load_users(Settings(users_file=None)) is None
    with pytest.raises(SettingsError, match="CASEFLOW_USERS_FILE"):
        load_users(Settings(users_file=str(tmp_path / "missing.yaml")))


def test_users_file_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASEFLOW_USERS_FILE", "none")
    assert Settings.from_env().users_file is None
    monkeypatch.setenv("CASEFLOW_USERS_FILE", "/etc/caseflow/users.yaml")
    assert Settings.from_env().users_file == "/etc/caseflow/users.yaml"
    monkeypatch.delenv("CASEFLOW_USERS_FILE")
    assert Settings.from_env().users_file == "deployments/users.yaml"
