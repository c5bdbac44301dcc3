"""Alembic environment of the outcome store: runs on the connection the store hands over.

:func:`mendflow.infra.outcomes.OutcomeStore.migrate` puts an open SQLAlchemy connection in
``config.attributes["connection"]``; there is no ``alembic.ini``.
"""

from __future__ import annotations

from alembic import context

from mendflow.infra.outcomes_schema import METADATA

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=METADATA,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
