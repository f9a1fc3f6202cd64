"""Who the district's users are: agency, roles, groups, 行政执法证 and 法律职业资格 (``deployments/users.yaml``).

Pure: no database, no HTTP. The engine asks two questions of it. *May this user act on this task?* (a
candidate of the task, holding what ``caseflow:requires`` names on the day the engine's clock says) and *who is
looking?* (a :class:`Viewer`, which decides what confidential instances a list or a read may show).

Groups are ``<agency>:<role>`` for each role a user holds, plus any extra groups the file lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

# The 案件监督管理部门 of the 纪委监委: sees every confidential (discipline) instance.
CASE_SUPERVISION = "discipline_commission:case_supervision"

ROLES = frozenset(
    {
        "officer",  # 执法人员: acts on enforcement tasks when holding a valid 河南省行政执法证
        "legal_reviewer",  # 法制审核人员
        "head",  # 正职负责人 / 主持工作的负责人 (and the district government's decision maker)
        "staff",  # registry, clerks
        "supervisor",  # justice_bureau: 督办
        "coordinator",  # justice_bureau: dispute coordination
        "case_supervision",  # discipline_commission: 案件监督管理部门
        "process_editor",
        "admin",
    }
)

# What ``caseflow:requires`` may name on a user task, and what each one checks.
REQUIREMENTS = {
    "certified_officer": "a 河南省行政执法证 valid on the day",
    "legal_qualification": "the national 法律职业资格",
    "head": "the role of head of the agency",
}


class DirectoryError(ValueError):
    """The users file cannot be used: says which user and which field."""


@dataclass(frozen=True)
class Certificate:
    """A 河南省行政执法证: its number and the last day it is valid."""

    number: str
    valid_until: date

    def valid_on(self, day: date) -> bool:
        return day <= self.valid_until


@dataclass(frozen=True)
class User:
    id: str
    name: str
    agency: str
    roles: tuple[str, ...]
    groups: frozenset[str]
    certificate: Certificate | None = None
    legal_qualification: str | None = None  # the 法律职业资格证书 number

    def missing(self, requires: Iterable[str], day: date) -> list[str]:
        """The requirements this user does not meet on ``day`` (empty: all are met)."""
        out = []
        for requirement in requires:
            if requirement == "certified_officer":
                ok = self.certificate is not None and self.certificate.valid_on(day)
            elif requirement == "legal_qualification":
                ok = bool(self.legal_qualification)
            elif requirement == "head":
                ok = "head" in self.roles
            else:
                ok = False  # unknown requirements are refused at deploy; never met if one slips through
            if not ok:
                out.append(requirement)
        return out

    def viewer(self) -> Viewer:
        return Viewer(user=self.id, groups=self.groups, agency=self.agency)


@dataclass(frozen=True)
class Viewer:
    """Who reads: decides which confidential instances appear.

    ``user`` None is nobody in particular (no header, an engine test): confidential instances stay hidden.
    ``everything`` is the engine itself (the scheduler, an operator's maintenance); case supervision sees every
    confidential instance through its group.
    """

    user: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    agency: str | None = None
    everything: bool = False

    @property
    def sees_all_confidential(self) -> bool:
        return self.everything or CASE_SUPERVISION in self.groups


ANONYMOUS = Viewer()
SYSTEM = Viewer(user="system", everything=True)


class Directory:
    """Users by id (loaded once; immutable)."""

    def __init__(self, users: Iterable[User], source: str = "<memory>") -> None:
        self.source = source
        self._users: dict[str, User] = {}
        for user in users:
            if user.id in self._users:
                raise DirectoryError(f"{source}: user id '{user.id}' appears twice")
            self._users[user.id] = user

    def get(self, user_id: str | None) -> User | None:
        return self._users.get(user_id) if user_id else None

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._users

    def __iter__(self) -> Iterator[User]:
        return iter(self._users.values())

    def __len__(self) -> int:
        return len(self._users)

    def viewer(self, user_id: str | None) -> Viewer:
        """The viewer for a user id; an id not in the directory is a viewer without groups."""
        user = self.get(user_id)
        if user is not None:
            return user.viewer()
        return Viewer(user=user_id) if user_id else ANONYMOUS


def load_directory(path: str | Path, agencies: Iterable[str] | None = None) -> Directory:
    """Read a users file. ``agencies`` (codes), when given, is what each user's agency must be one of."""
    source = str(path)
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DirectoryError(f"{source}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{source}: not valid YAML ({exc})") from None
    return parse_directory(document, source, agencies)


def load_agency_codes(path: str | Path) -> set[str]:
    """The agency codes of ``deployments/agencies.yaml``."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DirectoryError(f"{path}: cannot be read as YAML ({exc})") from None
    agencies = document.get("agencies") if isinstance(document, dict) else None
    if not isinstance(agencies, list):
        raise DirectoryError(f"{path}: has no list 'agencies'")
    return {str(a["code"]) for a in agencies if isinstance(a, dict) and "code" in a}


def parse_directory(document: Any, source: str, agencies: Iterable[str] | None = None) -> Directory:
    if not isinstance(document, dict) or not isinstance(document.get("users"), list):
        raise DirectoryError(f"{source}: expected a mapping with a list 'users'")
    known = set(agencies) if agencies is not None else None
    return Directory((_user(entry, i, source, known) for i, entry in enumerate(document["users"])), source)


def _user(entry: Any, index: int, source: str, agencies: set[str] | None) -> User:
    where = f"{source}: users[{index}]"
    if not isinstance(entry, Mapping):
        raise DirectoryError(f"{where} is not a mapping")
    user_id = _text(entry, "id", where)
    where = f"{source}: user '{user_id}'"
    name = _text(entry, "name", where)
    agency = _text(entry, "agency", where)
    if agencies is not None and agency not in agencies:
        raise DirectoryError(f"{where}: agency '{agency}' is not in the agencies file")
    roles = entry.get("roles") or []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise DirectoryError(f"{where}: roles must be a list of names")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise DirectoryError(f"{where}: unknown role '{unknown[0]}' (known: {', '.join(sorted(ROLES))})")
    extra = entry.get("groups") or []
    if not isinstance(extra, list) or not all(isinstance(g, str) and ":" in g for g in extra):
        raise DirectoryError(f"{where}: groups must be a list of '<agency>:<role>' names")
    certificate = entry.get("certificate")
    cert: Certificate | None = None
    if certificate is not None:
        if not isinstance(certificate, Mapping):
            raise DirectoryError(f"{where}: certificate must be a mapping with number and valid_until")
        number = _text(certificate, "number", f"{where}: certificate")
        valid_until = certificate.get("valid_until")
        if isinstance(valid_until, str):
            try:
                valid_until = date.fromisoformat(valid_until)
            except ValueError:
                valid_until = None
        if not isinstance(valid_until, date):
            raise DirectoryError(f"{where}: certificate valid_until must be a date (YYYY-MM-DD)")
        cert = Certificate(number, valid_until)
    qualification = entry.get("legal_qualification")
    if qualification is not None and not isinstance(qualification, str | int):
        raise DirectoryError(f"{where}: legal_qualification must be the certificate number")
    groups = frozenset({f"{agency}:{role}" for role in roles} | set(extra))
    return User(
        id=user_id,
        name=name,
        agency=agency,
        roles=tuple(roles),
        groups=groups,
        certificate=cert,
        legal_qualification=str(qualification) if qualification not in (None, "") else None,
    )


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise DirectoryError(f"{where}: '{key}' must be a non-empty text")
    return value.strip()
