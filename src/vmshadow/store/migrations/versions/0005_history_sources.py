"""history: imported data sets by identity (history_sources), wider source names

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A source is named by its resolved path and a digest now, longer than the
    # folder name that fitted 32 characters; rows imported before keep theirs.
    with op.batch_alter_table("history", schema=None) as batch_op:
        batch_op.alter_column(
            "source",
            existing_type=sa.String(length=32),
            type_=sa.String(length=255),
            existing_nullable=False,
        )
        batch_op.create_index(batch_op.f("ix_history_source"), ["source"], unique=False)
    op.create_table(
        "history_sources",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("history_sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_history_sources_digest"), ["digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("history_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_history_sources_digest"))
    op.drop_table("history_sources")
    with op.batch_alter_table("history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_history_source"))
        batch_op.alter_column(
            "source",
            existing_type=sa.String(length=255),
            type_=sa.String(length=32),
            existing_nullable=False,
        )
