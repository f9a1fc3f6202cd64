"""the link between agencies: outbox retry schedule and terminal failures, buffered messages keep their envelope

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 08:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("buffered_message") as batch:
        batch.add_column(sa.Column("recipient", sa.String(64), nullable=True))
        batch.add_column(sa.Column("envelope", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("buffered_message") as batch:
        batch.drop_column("envelope")
        batch.drop_column("recipient")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("failed_at")
        batch.drop_column("next_attempt_at")
