"""Jupyter notebooks started through the service, and the claims that keep their ports and caps unique."""

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base, UtcDateTime, utcnow


class Notebook(Base):
    """One notebook server: a Slurm job (batch) or a detached process on the login node (login)."""

    __tablename__ = "notebooks"
    __table_args__ = (Index("ix_notebooks_username_cluster", "username", "cluster"),)

    # random, so that ids say nothing about how many notebooks exist or whose they are
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    cluster: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    # the machine the server runs on, as that machine names itself (`hostname`): ports are claimed per host
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # where the login node's sshd connects to reach the server (127.0.0.1 in login mode)
    address: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # the server's token (the user's key to the notebook, never logged), sealed with AES-GCM under a
    # key derived from hcc.auth.secret (notebooks.service.NotebookStore)
    token: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the notebook's own folder on the cluster (its log, token file, certificate, port file)
    folder: Mapped[str] = mapped_column(String(4096))
    work_dir: Mapped[str] = mapped_column(String(4096))
    partition: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cpus: Mapped[int | None] = mapped_column(Integer, nullable=True)
    memory: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the PEM certificate the server presents (made by the service), to check it through the tunnel
    certificate: Mapped[str | None] = mapped_column(Text, nullable=True)
    # bumped by whoever moves a start on (a port retry): replicas compare-and-set it, never lock
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # TEXT: with the two paths, four VARCHAR(4096) would pass MySQL's 64 KiB row limit
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    client_addr: Mapped[str] = mapped_column(String(45))


class NotebookPort(Base):
    """A port claimed on a host by a live notebook: the primary key is the uniqueness.

    Written before the server is started (login mode) or once the job said where it listens (batch
    mode), deleted when the notebook stops or fails. Two replicas that pick the same port at the same
    instant both INSERT; the database lets one through and the other picks again.
    """

    __tablename__ = "notebook_ports"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True)
    notebook_id: Mapped[str] = mapped_column(ForeignKey("notebooks.id", ondelete="CASCADE"), index=True)


class NotebookSlot(Base):
    """One of a person's ``notebook_max_per_user`` places on a cluster, held by a live notebook.

    The cap is a constraint too: slots are numbered 0..cap-1 and the key refuses a second holder.
    """

    __tablename__ = "notebook_slots"

    cluster: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    notebook_id: Mapped[str] = mapped_column(ForeignKey("notebooks.id", ondelete="CASCADE"), unique=True)
