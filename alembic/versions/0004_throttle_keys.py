"""throttle keys: the rows that login attempts lock, so that the limit holds under concurrency

Revision ID: 0004_throttle_keys
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004_throttle_keys"
down_revision = "0003"
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_KW = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "throttle_keys",
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("last_attempt_at", UtcDateTime, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_throttle_keys"),
        **TABLE_KW,
    )


def downgrade() -> None:
    op.drop_table("throttle_keys")
