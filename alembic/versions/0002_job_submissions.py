"""job submissions registry

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_KW = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "job_submissions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("cluster", sa.String(32), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("submitted_at", UtcDateTime, nullable=False),
        sa.Column("script_path", sa.String(4096), nullable=True),
        sa.Column("work_dir", sa.String(4096), nullable=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("client_addr", sa.String(45), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_job_submissions"),
        **TABLE_KW,
    )
    op.create_index("ix_job_submissions_cluster_job", "job_submissions", ["cluster", "job_id"])
    op.create_index("ix_job_submissions_username_at", "job_submissions", ["username", "submitted_at"])


def downgrade() -> None:
    op.drop_table("job_submissions")
