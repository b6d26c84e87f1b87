"""Expiring download links that stream a file as their maker, without an Authorization header."""

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base, UtcDateTime, utcnow


class DownloadLink(Base):
    __tablename__ = "download_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # as for sessions: the public half for the lookup, an HMAC of the secret half
    token_id: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    # the link acts with its maker's session, and dies with it
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(64))
    cluster: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(4096))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # the session's credential, sealed again under the link's own token: a link must work
    # without the session token, which the link holder does not have
    credential: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
