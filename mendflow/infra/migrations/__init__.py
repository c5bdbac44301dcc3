"""Alembic migrations of the outcome store (see :mod:`mendflow.infra.outcomes`)."""
