"""expiring download links

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_KW = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "download_links",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("cluster", sa.String(32), nullable=False),
        sa.Column("path", sa.String(4096), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("credential", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_download_links"),
        sa.UniqueConstraint("token_id", name="uq_download_links_token_id"),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name="fk_download_links_session_id_sessions", ondelete="CASCADE"
        ),
        **TABLE_KW,
    )
    op.create_index("ix_download_links_session_id", "download_links", ["session_id"])


def downgrade() -> None:
    op.drop_table("download_links")
