"""job output: what slurmctld held about a submitted job's stdout/stderr, for after it forgets the job

Revision ID: 0007
Revises: 0004_throttle_keys
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # TEXT, not VARCHAR: two 4096-character paths already fill most of MySQL's 64 KiB row
    with op.batch_alter_table("job_submissions") as batch:
        batch.add_column(sa.Column("stdout_pattern", sa.Text(), nullable=True))
        batch.add_column(sa.Column("stderr_pattern", sa.Text(), nullable=True))
        batch.add_column(sa.Column("job_name", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_submissions") as batch:
        batch.drop_column("job_name")
        batch.drop_column("stderr_pattern")
        batch.drop_column("stdout_pattern")
