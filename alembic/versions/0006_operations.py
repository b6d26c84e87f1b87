"""long file operations

Revision ID: 0006
Revises: 0004_throttle_keys
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_KW = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "file_operations",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("cluster", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("path", sa.String(4096), nullable=False),
        sa.Column("to_cluster", sa.String(32), nullable=True),
        sa.Column("to_path", sa.String(4096), nullable=True),
        sa.Column("route", sa.String(8), nullable=False),
        sa.Column("runner", sa.String(8), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("work_dir", sa.String(1024), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("bytes_done", sa.BigInteger(), nullable=True),
        sa.Column("bytes_total", sa.BigInteger(), nullable=True),
        sa.Column("files_done", sa.BigInteger(), nullable=True),
        sa.Column("files_total", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("ended_at", UtcDateTime, nullable=True),
        sa.Column("error", sa.String(1000), nullable=True),
        sa.Column("swept_at", UtcDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_file_operations"),
        **TABLE_KW,
    )
    op.create_index("ix_file_operations_username_created_at", "file_operations", ["username", "created_at"])
    op.create_index("ix_file_operations_state_ended_at", "file_operations", ["state", "ended_at"])


def downgrade() -> None:
    op.drop_table("file_operations")
