"""Credits as a 64-bit integer: MAX_CREDITS is 2**63 - 1, and PostgreSQL's `integer` holds 32 bits (SQLite's
INTEGER always held 64, so only the declared type changes there).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("credits", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.alter_column("credits", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False)
