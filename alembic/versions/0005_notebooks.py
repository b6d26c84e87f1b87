"""Jupyter notebooks, their claimed ports and per-person slots

Revision ID: 0005
Revises: 0004_throttle_keys
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004_throttle_keys"
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
TABLE_KW = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_unicode_ci", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "notebooks",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("cluster", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("address", sa.String(255), nullable=True),
        sa.Column("token", sa.String(255), nullable=False),
        sa.Column("job_id", sa.String(64), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("folder", sa.String(4096), nullable=False),
        sa.Column("work_dir", sa.String(4096), nullable=False),
        sa.Column("partition", sa.String(64), nullable=True),
        sa.Column("cpus", sa.Integer(), nullable=True),
        sa.Column("memory", sa.Integer(), nullable=True),
        sa.Column("certificate", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=True),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("stopped_at", UtcDateTime, nullable=True),
        sa.Column("client_addr", sa.String(45), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notebooks"),
        **TABLE_KW,
    )
    op.create_index("ix_notebooks_username_cluster", "notebooks", ["username", "cluster"])
    op.create_table(
        "notebook_ports",
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("notebook_id", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("host", "port", name="pk_notebook_ports"),
        sa.ForeignKeyConstraint(
            ["notebook_id"],
            ["notebooks.id"],
            name="fk_notebook_ports_notebook_id_notebooks",
            ondelete="CASCADE",
        ),
        **TABLE_KW,
    )
    op.create_index("ix_notebook_ports_notebook_id", "notebook_ports", ["notebook_id"])
    op.create_table(
        "notebook_slots",
        sa.Column("cluster", sa.String(32), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("notebook_id", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("cluster", "username", "slot", name="pk_notebook_slots"),
        sa.UniqueConstraint("notebook_id", name="uq_notebook_slots_notebook_id"),
        sa.ForeignKeyConstraint(
            ["notebook_id"],
            ["notebooks.id"],
            name="fk_notebook_slots_notebook_id_notebooks",
            ondelete="CASCADE",
        ),
        **TABLE_KW,
    )


def downgrade() -> None:
    op.drop_table("notebook_slots")
    op.drop_table("notebook_ports")
    op.drop_table("notebooks")
