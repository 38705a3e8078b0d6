"""generation chunks: long generations rendered in parallel

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 03:25:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generation_chunks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("generation_id", sa.String(length=36), nullable=False),
        sa.Column("run", sa.String(length=255), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("start_frame", sa.Integer(), nullable=False),
        sa.Column("stop_frame", sa.Integer(), nullable=False),
        sa.Column("work_key", sa.String(length=1024), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=255), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("output_key", sa.String(length=1024), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["generation_id"], ["generations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("generation_chunks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_generation_chunks_generation_id"), ["generation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_generation_chunks_status"), ["status"], unique=False)
        batch_op.create_index(
            "ux_generation_chunks_run_index", ["generation_id", "run", "index"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("generation_chunks", schema=None) as batch_op:
        batch_op.drop_index("ux_generation_chunks_run_index")
        batch_op.drop_index(batch_op.f("ix_generation_chunks_status"))
        batch_op.drop_index(batch_op.f("ix_generation_chunks_generation_id"))
    op.drop_table("generation_chunks")
