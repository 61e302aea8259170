"""Alembic environment: runs on the connection ``server.db.migrate`` hands in."""

from __future__ import annotations

from alembic import context

from server.db.models import metadata
from server.db.partitions import comparison_filter


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode rebuilds tables
        compare_type=True,
        # Autogenerate: PostgreSQL's events partitions are not models, and a
        # constraint declared for one database only is not missing from the other.
        include_object=comparison_filter(connection.dialect.name),  # type: ignore[attr-defined]
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `rentgate db upgrade` (server.db.migrate)")
_run(connection)
