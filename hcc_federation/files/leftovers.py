"""What interrupted uploads leave on clusters: recorded while written, removed by hcc-cleanup later."""

from __future__ import annotations

import logging
import posixpath
import stat
from datetime import datetime, timedelta
from typing import Protocol

import paramiko
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from ..db import independent_session
from ..models import UploadTemp
from .metadata import lstat_or_none
from .transfer import TEMP_PREFIX

log = logging.getLogger(__name__)

# A temporary file older than this whose upload never ended was left by a dead link or process
LEFTOVER_AGE = timedelta(days=1)
# A row hcc-cleanup could not act on (a password cluster, one no longer configured or down) is
# dropped once this old: the owner's own next write into that directory still sweeps the file
LEFTOVER_BOUND = timedelta(days=7)


class TempJournal(Protocol):
    """Where ``write_file`` records its temporary file while it exists (see ``UploadRecords``)."""

    def started(self, temp: str) -> object: ...

    def ended(self, record: object) -> None: ...


class UploadRecords:
    """A row in ``upload_temps`` per temporary file, committed on its own (not in the request's
    transaction: an upload cut by a dead link fails its request, and its row must stay).

    The cost on the upload path: one INSERT and one DELETE, each its own transaction (a round trip
    and a commit each; see the report in docs/deploy.md). Recording fails the upload before the
    file is created (the database is down: the request fails anyway); forgetting never fails an
    upload that succeeded, it only leaves a row that hcc-cleanup drops when it finds no file.
    """

    def __init__(self, factory: sessionmaker[Session], username: str, cluster: str) -> None:
        self._factory = factory
        self._username = username
        self._cluster = cluster

    def started(self, temp: str) -> int:
        with independent_session(self._factory) as db:
            row = UploadTemp(username=self._username, cluster=self._cluster, path=temp)
            db.add(row)
            db.flush()
            return row.id

    def ended(self, record: object) -> None:
        try:
            with independent_session(self._factory) as db:
                db.execute(delete(UploadTemp).where(UploadTemp.id == record))
        except Exception:
            log.warning("could not forget upload record %s; hcc-cleanup will", record, exc_info=True)


# what remove_leftover found
REMOVED, GONE, ALIVE, NOT_OURS = "removed", "gone", "alive", "not ours"


def remove_leftover(sftp: paramiko.SFTPClient, path: str, stale_before: datetime) -> str:
    """Remove the temporary upload file at ``path`` if it is one and was untouched since
    ``stale_before``; what was found (``REMOVED``, ``GONE``, ``ALIVE``, ``NOT_OURS``).

    Called as the file's owner. A file still written to is ``ALIVE`` (an upload longer than a day):
    left alone. Anything but a regular file, or a name that is not a temporary one, is not touched.
    Raises the typed errors of ``lstat_or_none`` (a link failure, permission denied).
    """
    if not posixpath.basename(path).startswith(TEMP_PREFIX):
        return NOT_OURS
    attr = lstat_or_none(sftp, path)
    if attr is None:
        return GONE
    if not stat.S_ISREG(attr.st_mode or 0):
        return NOT_OURS
    if (attr.st_mtime or 0) > stale_before.timestamp():
        return ALIVE
    try:
        sftp.remove(path)
    except FileNotFoundError:
        return GONE
    return REMOVED
