"""The web corpus's near-duplicate tables, now the catalog's own: before this revision the corpus made them on
first use, so a catalog may already have them (then only missing indexes are added).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BANDS = 8


def upgrade() -> None:
    found = sa.inspect(op.get_bind())
    if not found.has_table("web_image_hashes"):
        op.create_table(
            "web_image_hashes",
            sa.Column("dataset_id", sa.String(length=64), nullable=False),
            sa.Column("sha256", sa.String(length=64), nullable=False),
            sa.Column("item_id", sa.String(length=64), nullable=False),
            sa.Column("phash", sa.String(length=16), nullable=False),
            *(sa.Column(f"b{i}", sa.Integer(), nullable=False) for i in range(BANDS)),
            sa.PrimaryKeyConstraint("dataset_id", "sha256"),
        )
    have = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("web_image_hashes")}
    if "ix_web_image_hashes_item_id" not in have:
        op.create_index("ix_web_image_hashes_item_id", "web_image_hashes", ["item_id"], unique=False)
    for i in range(BANDS):
        if f"ix_web_image_hashes_b{i}" not in have:
            op.create_index(f"ix_web_image_hashes_b{i}", "web_image_hashes", ["dataset_id", f"b{i}"], unique=False)
    if not found.has_table("web_image_looks"):
        op.create_table(
            "web_image_looks",
            sa.Column("dataset_id", sa.String(length=64), nullable=False),
            sa.Column("sha256", sa.String(length=64), nullable=False),
            sa.Column("aspect", sa.Float(), nullable=False),
            sa.Column("red", sa.Float(), nullable=False),
            sa.Column("green", sa.Float(), nullable=False),
            sa.Column("blue", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("dataset_id", "sha256"),
        )


def downgrade() -> None:
    op.drop_table("web_image_looks")
    op.drop_table("web_image_hashes")
