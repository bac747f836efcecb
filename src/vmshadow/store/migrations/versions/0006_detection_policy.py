"""transitions: decision policy, and requests adopted from libvirt domains

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Transitions made before this had no policy: "manual" (their fast_launch
    # flag still says which were fast). The detection columns are None for
    # every transition asked through vmshadow itself.
    with op.batch_alter_table("transitions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("policy", sa.String(length=32), server_default="manual", nullable=False)
        )
        batch_op.add_column(sa.Column("policy_verdict", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("origin", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("domain_uuid", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("adopted", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("detect_key", sa.String(length=128), nullable=True))
        batch_op.create_index(batch_op.f("ix_transitions_detect_key"), ["detect_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transitions_detect_key"))
        batch_op.drop_column("detect_key")
        batch_op.drop_column("adopted")
        batch_op.drop_column("domain_uuid")
        batch_op.drop_column("origin")
        batch_op.drop_column("policy_verdict")
        batch_op.drop_column("policy")
