"""host pool: where each transition's shadow and VM are placed, and why

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transitions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shadow_host", sa.String(length=63), nullable=True))
        batch_op.add_column(
            sa.Column("shadow_live", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("vm_host", sa.String(length=63), nullable=True))
        batch_op.add_column(sa.Column("placement", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transitions", schema=None) as batch_op:
        batch_op.drop_column("placement")
        batch_op.drop_column("vm_host")
        batch_op.drop_column("shadow_live")
        batch_op.drop_column("shadow_host")
