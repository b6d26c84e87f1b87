"""upload temporaries: the .hcc-upload-* files being written, for hcc-cleanup to remove what dead links left

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_KW = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "upload_temps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("cluster", sa.String(32), nullable=False),
        sa.Column("path", sa.String(4096), nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_upload_temps"),
        **TABLE_KW,
    )
    op.create_index("ix_upload_temps_started_at", "upload_temps", ["started_at"])


def downgrade() -> None:
    op.drop_table("upload_temps")
