"""The district's agencies (``deployments/agencies.yaml``) and their HMAC signing keys.

A key comes from the environment variable named in the agency's ``key.env``, else from the file named in
``key.file`` (its text, stripped; at least 32 characters, used as UTF-8 bytes). In development and test, when
neither is set, a **development key** is derived from the agency code: ``SHA-256("caseflow development key:" +
code)`` (32 bytes). Anyone can compute it, so production (``CASEFLOW_ENV=production``) never derives one:
:meth:`Keyring.require` refuses to start without a real key for each agency the engine serves.

**Seal keys** (AES-256-GCM, for sealed messages of confidential processes, see ``adapters/envelope.py``) are a
separate secret per *receiving* agency: ``key.seal_env`` / ``key.seal_file`` name where it is, as 64 hexadecimal
characters or the base64 of 32 bytes. In development and test a public one is derived as ``SHA-256("caseflow
development seal key:" + code)``; production never derives one, so an agency that declares a seal key source
receives sealed messages only with a real key (its engine or SDK refuses to start without it, and a sender
without its seal key refuses to send, raising an incident, rather than send in clear).

No dependency on ``engine/``: the external-system SDK uses this module too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CODE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
MIN_KEY_CHARS = 32
DEFAULT_FILE = Path(__file__).resolve().parents[1] / "deployments" / "agencies.yaml"


class AgencyError(ValueError):
    pass


@dataclass(frozen=True)
class Agency:
    code: str
    name: str
    kind: str
    engine: str
    key_env: str | None = None
    key_file: str | None = None
    seal_env: str | None = None
    seal_file: str | None = None

    @property
    def receives_sealed(self) -> bool:
        """agencies.yaml names a seal key source for it (production then requires the key)."""
        return bool(self.seal_env or self.seal_file)

    @property
    def district(self) -> bool:
        """Served by the district's caseflow engine (else by the agency's own system)."""
        return self.engine == "district"


@dataclass(frozen=True)
class Registry:
    agencies: Mapping[str, Agency]

    def __contains__(self, code: object) -> bool:
        return code in self.agencies

    def __iter__(self) -> Iterator[Agency]:
        return iter(self.agencies.values())

    def get(self, code: str) -> Agency:
        try:
            return self.agencies[code]
        except KeyError:
            raise AgencyError(f"'{code}' is not an agency in agencies.yaml") from None

    def codes(self) -> tuple[str, ...]:
        return tuple(self.agencies)

    def district_codes(self) -> tuple[str, ...]:
        return tuple(a.code for a in self.agencies.values() if a.district)


def load(path: str | Path | None = None) -> Registry:
    file = Path(path) if path else DEFAULT_FILE
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AgencyError(f"cannot read the agencies file {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise AgencyError(f"{file} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("agencies"), list):
        raise AgencyError(f"{file} must hold a mapping with an 'agencies' list")
    agencies: dict[str, Agency] = {}
    for item in data["agencies"]:
        agency = _agency(item, file)
        if agency.code in agencies:
            raise AgencyError(f"{file}: agency '{agency.code}' is listed twice")
        agencies[agency.code] = agency
    return Registry(agencies)


def _agency(item: Any, file: Path) -> Agency:
    if not isinstance(item, dict):
        raise AgencyError(f"{file}: every agency must be a mapping")
    code = item.get("code")
    if not isinstance(code, str) or not CODE.match(code):
        raise AgencyError(f"{file}: agency code {code!r} must match {CODE.pattern}")
    key = item.get("key") or {}
    if not isinstance(key, dict):
        raise AgencyError(f"{file}: key of '{code}' must be a mapping with env and/or file")
    return Agency(
        code=code,
        name=str(item.get("name") or code),
        kind=str(item.get("kind") or "department"),
        engine=str(item.get("engine") or "district"),
        key_env=key.get("env") or None,
        key_file=key.get("file") or None,
        seal_env=key.get("seal_env") or None,
        seal_file=key.get("seal_file") or None,
    )


def development_key(code: str) -> bytes:
    """The public, derivable key used in development and test when no real key is configured."""
    return hashlib.sha256(f"caseflow development key:{code}".encode()).digest()


def development_seal_key(code: str) -> bytes:
    """The public, derivable seal key used in development and test when no real one is configured."""
    return hashlib.sha256(f"caseflow development seal key:{code}".encode()).digest()


def parse_seal_key(text: str, code: str) -> bytes:
    """32 bytes from 64 hexadecimal characters or from base64; AgencyError otherwise."""
    text = text.strip()
    raw: bytes | None = None
    if len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        raise AgencyError(
            f"the seal key of '{code}' must be 32 bytes as 64 hexadecimal characters or base64 "
            "(e.g. `openssl rand -hex 32`)"
        )
    return raw


class Keyring:
    """Signing keys by agency code, read once and cached."""

    def __init__(
        self,
        registry: Registry,
        *,
        production: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.production = production
        self._environ = os.environ if environ is None else environ
        self._cache: dict[str, bytes | None] = {}
        self._seal_cache: dict[str, bytes | None] = {}

    def _secret(self, env: str | None, file: str | None, what: str, code: str) -> str | None:
        """A secret's text from its environment variable, else from its file; None when neither has it."""
        if env and self._environ.get(env):
            return self._environ[env]
        if file and Path(file).is_file():
            try:
                return Path(file).read_text(encoding="utf-8")
            except OSError as exc:
                raise AgencyError(f"cannot read the {what} file of '{code}': {exc.strerror}") from None
        return None

    def _configured(self, agency: Agency) -> bytes | None:
        text = self._secret(agency.key_env, agency.key_file, "key", agency.code)
        if text is None:
            return None
        text = text.strip()
        if len(text) < MIN_KEY_CHARS:
            raise AgencyError(f"the key of '{agency.code}' is shorter than {MIN_KEY_CHARS} characters")
        return text.encode()

    def get(self, code: str) -> bytes | None:
        """The agency's key; None for an unknown agency, or in production when it has no real key."""
        if code in self._cache:
            return self._cache[code]
        if code not in self.registry:
            return None
        key = self._configured(self.registry.get(code))
        if key is None and not self.production:
            key = development_key(code)
        self._cache[code] = key
        return key

    def seal_key(self, code: str) -> bytes | None:
        """The agency's seal key (to seal messages to it, or to open them); None for an unknown agency, or in
        production when it has no real one."""
        if code in self._seal_cache:
            return self._seal_cache[code]
        if code not in self.registry:
            return None
        agency = self.registry.get(code)
        text = self._secret(agency.seal_env, agency.seal_file, "seal key", code)
        key = parse_seal_key(text, code) if text is not None else None
        if key is None and not self.production:
            key = development_seal_key(code)
        self._seal_cache[code] = key
        return key

    def key(self, code: str) -> bytes:
        found = self.get(code)
        if found is None:
            raise AgencyError(f"no signing key for agency '{code}'")
        return found

    def require(self, codes: Iterable[str]) -> None:
        """Refuse to start (AgencyError) unless every agency in ``codes`` has a usable key."""
        missing = [c for c in codes if self.get(c) is None]
        if missing:
            hint = ", ".join(
                f"{c} ({self.registry.get(c).key_env or self.registry.get(c).key_file})"
                if c in self.registry
                else f"{c} (not in agencies.yaml)"
                for c in missing
            )
            raise AgencyError(f"no signing key configured for: {hint}")
        unsealable = [
            c
            for c in codes
            if c in self.registry and self.registry.get(c).receives_sealed and self.seal_key(c) is None
        ]
        if unsealable:
            hint = ", ".join(
                f"{c} ({self.registry.get(c).seal_env or self.registry.get(c).seal_file})" for c in unsealable
            )
            raise AgencyError(f"no seal key configured for: {hint}")

    def known(self) -> Iterator[tuple[str, bytes]]:
        for code in self.registry.codes():
            key = self.get(code)
            if key is not None:
                yield code, key
