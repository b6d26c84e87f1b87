"""sessions, login attempts and the audit log

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# naive UTC with microseconds on MySQL (DATETIME(6)); SQLite keeps them anyway
UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# utf8mb4 on MySQL whatever the server's default
TABLE_KW = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("last_seen_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
        sa.Column("client_addr", sa.String(45), nullable=False),
        sa.Column("credential", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.UniqueConstraint("token_id", name="uq_sessions_token_id"),
        **TABLE_KW,
    )
    op.create_index("ix_sessions_username", "sessions", ["username"])
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("client_addr", sa.String(45), nullable=False),
        sa.Column("attempted_at", UtcDateTime, nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_attempts"),
        **TABLE_KW,
    )
    op.create_index("ix_login_attempts_username_at", "login_attempts", ["username", "attempted_at"])
    op.create_index("ix_login_attempts_addr_at", "login_attempts", ["client_addr", "attempted_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("client_addr", sa.String(45), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        **TABLE_KW,
    )
    op.create_index("ix_audit_log_username_at", "audit_log", ["username", "at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("login_attempts")
    op.drop_table("sessions")
