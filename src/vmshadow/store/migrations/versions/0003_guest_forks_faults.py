"""samples: the guest's processes started and page faults per second

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: the host's view has neither, and nor do samples taken before.
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("forks_ps", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("faults_ps", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_column("faults_ps")
        batch_op.drop_column("forks_ps")
