"""Typed settings from the environment (``CASEFLOW_*``), with defaults for the embedded single machine."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.definitions.xml import DEFAULT_MAX_BYTES


class SettingsError(ValueError):
    pass


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value


def _optional_path(raw: str | None, default: str | None) -> str | None:
    """Unset: the default; "none" (or "off"): nothing; anything else: that path."""
    if raw is None or raw == "":
        return default
    return None if raw.strip().lower() in ("none", "off") else raw


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///./caseflow.db"
    environment: str = "development"
    timezone: str = "Asia/Shanghai"
    max_model_bytes: int = DEFAULT_MAX_BYTES
    message_ttl_seconds: int = 86_400
    job_retries: int = 3
    scheduler_interval_ms: int = 200
    host: str = "127.0.0.1"
    port: int = 8080
    bpmn_dir: str = "bpmn"
    amqp_url: str | None = None
    # agencies this engine serves; empty = every agency whose engine is "district" in the agencies file
    agencies: tuple[str, ...] = field(default_factory=tuple)
    amqp_prefix: str = "caseflow"
    agencies_file: str | None = None  # None = deployments/agencies.yaml
    max_message_bytes: int = 1024 * 1024
    link_consumers: int = 4  # consumer connections per engine process (messages are handled concurrently)
    # local holiday arrangements (*.yaml) beside chinese-calendar's; see engine/calendar/files.py
    calendar_dir: str = "deployments/calendar"
    # users, roles, certificates (engine/directory.py); None: no directory, anyone may act on any task
    users_file: str | None = "deployments/users.yaml"

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        settings = cls(
            database_url=env.get("CASEFLOW_DATABASE_URL") or cls.database_url,
            environment=env.get("CASEFLOW_ENV", cls.environment),
            timezone=env.get("CASEFLOW_TIMEZONE", cls.timezone),
            max_model_bytes=_int("CASEFLOW_MAX_MODEL_BYTES", DEFAULT_MAX_BYTES, 1024),
            message_ttl_seconds=_int("CASEFLOW_MESSAGE_TTL_SECONDS", 86_400, 1),
            job_retries=_int("CASEFLOW_JOB_RETRIES", 3, 1),
            scheduler_interval_ms=_int("CASEFLOW_SCHEDULER_INTERVAL_MS", 200, 10),
            host=env.get("CASEFLOW_HOST", cls.host),
            port=_int("CASEFLOW_PORT", 8080, 1),
            bpmn_dir=env.get("CASEFLOW_BPMN_DIR", cls.bpmn_dir),
            amqp_url=env.get("CASEFLOW_AMQP_URL") or None,
            agencies=tuple(a.strip() for a in env.get("CASEFLOW_AGENCIES", "").split(",") if a.strip()),
            amqp_prefix=env.get("CASEFLOW_AMQP_PREFIX") or cls.amqp_prefix,
            agencies_file=env.get("CASEFLOW_AGENCIES_FILE") or None,
            max_message_bytes=_int("CASEFLOW_MAX_MESSAGE_BYTES", 1024 * 1024, 1024),
            link_consumers=_int("CASEFLOW_LINK_CONSUMERS", 4, 1),
            calendar_dir=env.get("CASEFLOW_CALENDAR_DIR") or cls.calendar_dir,
            users_file=_optional_path(env.get("CASEFLOW_USERS_FILE"), cls.users_file),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if self.environment not in ("development", "test", "production"):
            raise SettingsError("CASEFLOW_ENV must be development, test or production")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"CASEFLOW_TIMEZONE={self.timezone!r} is not a known time zone") from None
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", self.amqp_prefix):
            raise SettingsError(
                "CASEFLOW_AMQP_PREFIX may hold letters, digits, '_', '.' and '-' (at most 64)"
            )
        if self.environment == "production" and self.database_url.startswith("sqlite"):
            raise SettingsError("production needs PostgreSQL: set CASEFLOW_DATABASE_URL")

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
