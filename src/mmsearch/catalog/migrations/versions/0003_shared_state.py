"""State shared by processes on one catalog: per-key one-second throttle windows and the replay guard.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "throttle_windows",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("window", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window"),
    )
    op.create_table(
        "replay_guard",
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("token"),
    )
    op.create_index(op.f("ix_replay_guard_expires_at"), "replay_guard", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_replay_guard_expires_at"), table_name="replay_guard")
    op.drop_table("replay_guard")
    op.drop_table("throttle_windows")
