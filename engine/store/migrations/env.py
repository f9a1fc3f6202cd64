"""Alembic environment: runs against the engine handed over in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from engine.store.tables import metadata

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    connection.info["write"] = True
    context.configure(
        connection=connection, target_metadata=metadata, render_as_batch=True, transaction_per_migration=True
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
