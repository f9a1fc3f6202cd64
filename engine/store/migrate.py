"""Apply the Alembic migrations (run on every start, before the engine serves anything).

Several engine processes may start at once on an empty PostgreSQL database: a session-level advisory lock lets
one of them migrate while the others wait, then find the schema current. (SQLite has one writer anyway.)
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_lock key: "caseflow" in ASCII, as a 64-bit number
MIGRATION_LOCK = int.from_bytes(b"caseflow", "big") & 0x7FFF_FFFF_FFFF_FFFF


def alembic_config(db: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = db
    return config


def migrate(db: Engine) -> None:
    if db.dialect.name != "postgresql":
        command.upgrade(alembic_config(db), "head")
        return
    with db.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        lock.commit()
        try:
            command.upgrade(alembic_config(db), "head")
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            lock.commit()
