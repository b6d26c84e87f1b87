"""The registry of long file operations (copy, move, delete) that run on a cluster, not in a request."""

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base, UtcDateTime, utcnow


class FileOperation(Base):
    """One operation, keyed by a random public id; its live state is in a progress file on the cluster.

    ``state`` and the progress columns are the last values read from that file: once the state is
    final (done, failed, cancelled) the row no longer changes.
    """

    __tablename__ = "file_operations"
    __table_args__ = (
        Index("ix_file_operations_username_created_at", "username", "created_at"),
        Index("ix_file_operations_state_ended_at", "state", "ended_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    # the cluster it runs on (the source of a cluster-to-cluster copy)
    cluster: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(4096))
    to_cluster: Mapped[str | None] = mapped_column(String(32), nullable=True)
    to_path: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    # local (one cluster), push (the source's worker sends over SSH), relay (the service streams)
    route: Mapped[str] = mapped_column(String(8))
    # job (Slurm), detached (a process on the login node), service (a relay thread of one replica)
    runner: Mapped[str] = mapped_column(String(8))
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the operation's private folder on its cluster: parameters, scripts, progress, logs
    work_dir: Mapped[str] = mapped_column(String(1024))
    state: Mapped[str] = mapped_column(String(16))
    bytes_done: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    files_done: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    files_total: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    # when hcc-cleanup removed the folder on the cluster (the row itself goes after retention)
    swept_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
