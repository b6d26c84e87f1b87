"""Temporary upload files on clusters, recorded while written: what dead links leave, hcc-cleanup removes."""

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base, UtcDateTime, utcnow


class UploadTemp(Base):
    """One ``.hcc-upload-*`` file being written. The row is inserted (and committed) before the file
    is created and deleted once the file is renamed into place or removed; a row that outlives its
    upload names a file that a dead SSH link (or a dead process) left behind."""

    __tablename__ = "upload_temps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    cluster: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(4096))
    # hcc-cleanup reads the rows older than a day: indexed, as the table is written by every upload
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
