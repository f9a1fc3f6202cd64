"""confidentiality, deadline flags, task role requirements and incident details

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 08:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("process_definition") as batch:
        batch.add_column(sa.Column("confidential", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("process_instance") as batch:
        batch.add_column(sa.Column("confidential", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("flags", sa.JSON(), nullable=True))
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("confidential", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("deadline_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("requires", sa.JSON(), nullable=True))
    with op.batch_alter_table("incident") as batch:
        batch.add_column(sa.Column("details", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incident") as batch:
        batch.drop_column("details")
    with op.batch_alter_table("task") as batch:
        batch.drop_column("requires")
        batch.drop_column("deadline_note")
        batch.drop_column("confidential")
    with op.batch_alter_table("process_instance") as batch:
        batch.drop_column("flags")
        batch.drop_column("confidential")
    with op.batch_alter_table("process_definition") as batch:
        batch.drop_column("confidential")
