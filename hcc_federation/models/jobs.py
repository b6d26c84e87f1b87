"""The registry of job submissions made through the service."""

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base, UtcDateTime, utcnow


class JobSubmission(Base):
    """One sbatch that the service ran for a person; keyed by (cluster, job id).

    Not unique: a cluster whose controller state is reset starts its ids again, and the row is
    written after sbatch succeeded, when refusing it would lose the record of a real job.
    """

    __tablename__ = "job_submissions"
    __table_args__ = (
        Index("ix_job_submissions_cluster_job", "cluster", "job_id"),
        Index("ix_job_submissions_username_at", "username", "submitted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    script_path: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    work_dir: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    client_addr: Mapped[str] = mapped_column(String(45))
    # What slurmctld held about the job's output files just after sbatch, for when it has forgotten
    # the job (sacct 22.05 has no StdOut): --output/--error as given ("" for sbatch's default) and
    # the job's name for %x. NULL: not recorded (slurmctld did not answer, or an older row).
    stdout_pattern: Mapped[str | None] = mapped_column(Text, nullable=True)
    stderr_pattern: Mapped[str | None] = mapped_column(Text, nullable=True)
    job_name: Mapped[str | None] = mapped_column(Text, nullable=True)
