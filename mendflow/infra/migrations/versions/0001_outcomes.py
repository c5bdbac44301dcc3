"""The outcome store: attempts and missions.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "missions",
        sa.Column("mission_id", sa.String(120), primary_key=True),
        sa.Column("repository", sa.String(1000), nullable=False, index=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score_before", sa.Float, nullable=False),
        sa.Column("score_after", sa.Float, nullable=False),
        sa.Column("accepted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("autonomy", sa.String(40)),
        sa.Column("approval_decision", sa.String(20)),
        sa.Column("requested_at", sa.DateTime(timezone=True)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(240), nullable=False, unique=True),
        sa.Column("mission_id", sa.String(120), nullable=False, index=True),
        sa.Column("repository", sa.String(1000), nullable=False, index=True),
        sa.Column("finding_id", sa.String(120), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("strategy", sa.String(120), nullable=False),
        sa.Column("fixer", sa.String(40), nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("variant", sa.String(200)),
        sa.Column("result", sa.String(20), nullable=False),
        sa.Column("gate", sa.String(120)),
        sa.Column("reason", sa.Text),
        sa.Column("patch_id", sa.String(240), index=True),
        sa.Column("commit", sa.String(64)),
        sa.Column("tokens_in", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tokens_out", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
        sa.Column("wall_s", sa.Float, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("approval", sa.String(20)),
        sa.Column("post_merge", sa.String(20)),
    )


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_table("missions")
