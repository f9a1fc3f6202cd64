"""Apply the Alembic migrations (run on every start, before the engine serves anything)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(db: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = db
    return config


def migrate(db: Engine) -> None:
    command.upgrade(alembic_config(db), "head")
