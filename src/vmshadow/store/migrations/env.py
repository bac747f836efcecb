"""Alembic environment: always run from ``vmshadow.store.db.migrate`` with a live connection."""

from __future__ import annotations

from alembic import context

from vmshadow.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode copies the table.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
