"""Directory listings, one page at a time in memory bounded by the page."""

from __future__ import annotations

import heapq
import itertools
import posixpath
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import paramiko

from hcc_federation.errors import InvalidArgument
from hcc_federation.remote.paramiko_compat import read_directory

from .errors import NameNotUtf8, NotADirectory, map_sftp_error
from .metadata import Runner, attr_metadata, guess_mime, readlink, resolve_ids
from .paths import validate_path

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000


# ---------------------------------------------------------------------------------------- listing

# (rank, name, mode, size, uid, gid, mtime): rank 0 sorts directories first. Names are unique in a
# directory, so tuples never compare past the name. Kept compact because a deep page of a huge
# directory holds offset + limit of them.
_Row = tuple[int, str, int, int, int, int, int]


def _row(attr: paramiko.SFTPAttributes) -> _Row:
    mode = attr.st_mode or 0
    return (
        0 if stat.S_ISDIR(mode) else 1,
        attr.filename,
        mode,
        attr.st_size or 0,
        attr.st_uid if attr.st_uid is not None else -1,
        attr.st_gid if attr.st_gid is not None else -1,
        attr.st_mtime or 0,
    )


def page_rows(rows: Iterable[_Row], offset: int, limit: int) -> tuple[list[_Row], int]:
    """Directories first, then by name (code point order); returns (page, total) in O(offset+limit) memory."""
    total = 0

    def counted() -> Iterator[_Row]:
        nonlocal total
        for row in rows:
            total += 1
            yield row

    if offset + limit == 0:
        for _ in counted():
            pass
        return [], total
    smallest = heapq.nsmallest(offset + limit, counted())
    return smallest[offset:], total


class ListingSnapshots:
    """Sorted listings of large directories, kept a few seconds so that paging does not re-read them.

    SFTP cannot seek in a directory, so without this every page of a 10,000-entry directory read
    all 10,000 entries (ten pages: ten whole reads). A snapshot is taken when a page leaves entries
    after it, per pooled connection (one user: permissions cannot leak) and path, and serves later
    pages (offset > 0; a first page always reads afresh) for ``ttl`` seconds while the directory's
    own mtime and size are unchanged (a file added,
    removed or renamed changes them; a file changed in place shows its old size or time for up to
    ``ttl``; SFTP's whole-second mtime lets a change in the same second pass for ``ttl``). Bounded:
    at most ``MAX_ROWS`` entries held in all, least recently used dropped first, and none of a
    directory of more than ``MAX_DIRECTORY`` entries. ``ttl`` 0: none.
    """

    MAX_ROWS = 200_000
    # a larger directory gets no snapshot: its first page is held in the page's heap as before
    # (offset + limit rows), after at most this many rows were held on the way (about 12 MiB)
    MAX_DIRECTORY = 50_000

    def __init__(self, ttl: float, clock=time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        # (id of the connection, path) -> (connection, taken at, (mtime, size), sorted rows)
        self._snapshots: OrderedDict[tuple[int, str], tuple[object, float, tuple, list[_Row]]] = OrderedDict()
        self._rows = 0

    def get(self, owner: object, path: str, version: tuple) -> list[_Row] | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            key = (id(owner), path)
            found = self._snapshots.get(key)
            if found is None:
                return None
            kept_owner, taken_at, kept_version, rows = found
            if kept_owner is owner and kept_version == version and 0 <= self._clock() - taken_at < self.ttl:
                self._snapshots.move_to_end(key)
                return rows
            self._drop(key)
            return None

    def put(self, owner: object, path: str, version: tuple, rows: list[_Row]) -> None:
        if self.ttl <= 0 or len(rows) > self.MAX_ROWS:
            return
        with self._lock:
            key = (id(owner), path)
            if key in self._snapshots:
                self._drop(key)
            self._snapshots[key] = (owner, self._clock(), version, rows)
            self._rows += len(rows)
            while self._rows > self.MAX_ROWS:
                self._drop(next(iter(self._snapshots)))

    def _drop(self, key: tuple[int, str]) -> None:
        self._rows -= len(self._snapshots.pop(key)[3])


def _connection_of(sftp: paramiko.SFTPClient) -> object:
    channel = sftp.get_channel()
    return channel.get_transport() if channel is not None else sftp


def check_paging(offset: object, limit: object) -> tuple[int, int]:
    """offset >= 0 and 0 <= limit <= MAX_LIST_LIMIT, else InvalidArgument naming the parameter."""
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise InvalidArgument("offset must be a whole number >= 0", field="offset")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_LIST_LIMIT:
        raise InvalidArgument(f"limit must be between 0 and {MAX_LIST_LIMIT}", field="limit")
    return offset, limit


def list_directory(
    sftp: paramiko.SFTPClient,
    path: str,
    *,
    offset: int = 0,
    limit: int = DEFAULT_LIST_LIMIT,
    run: Runner | None = None,
    attr: paramiko.SFTPAttributes | None = None,
    snapshots: ListingSnapshots | None = None,
) -> dict[str, Any]:
    """The directory's metadata plus ``entries`` (one page), ``offset``, ``limit`` and ``total``.

    Streams the listing (``read_directory``) and keeps only the offset+limit smallest rows, so memory is
    bounded by the page, not by the directory. Entries carry ``mime`` guessed from the name and
    ``text: None``: sniffing would cost an open/read/close per file of the page. A symlink to a
    directory is listed (the symlink's own metadata comes first). ``attr``: the path's ``lstat_path``,
    when the caller already has it (saves a round trip). ``snapshots``: where a large directory's
    sorted listing is kept for its next pages (see ListingSnapshots); then a directory with more
    entries than the page is held whole, once, instead of offset + limit rows.
    """
    path = validate_path(path)
    offset, limit = check_paging(offset, limit)
    try:
        own = attr if attr is not None else sftp.lstat(path)
        followed = sftp.stat(path) if stat.S_ISLNK(own.st_mode or 0) else own
    except OSError as exc:
        raise map_sftp_error(exc, path, "look at") from None
    if not stat.S_ISDIR(followed.st_mode or 0):
        raise NotADirectory(f"not a directory: {path}", path=path)
    owner = _connection_of(sftp)
    version = (followed.st_mtime, followed.st_size)
    # a first page always reads the directory (and takes a new snapshot): only the pages after it
    # come from one, so a listing shows the directory as of its first page, as a cursor would
    kept = snapshots.get(owner, path, version) if snapshots is not None and offset > 0 else None
    if kept is not None:
        page, total = kept[offset : offset + limit], len(kept)
    else:
        try:
            rows = (_row(attr) for attr in read_directory(sftp, path))
            # up to a snapshot's bound the rows are held and sorted once; past it, the rest is
            # streamed through the page's heap and no snapshot is kept (memory stays bounded)
            held = list(itertools.islice(rows, snapshots.MAX_DIRECTORY + 1)) if snapshots is not None else []
            if snapshots is not None and len(held) <= snapshots.MAX_DIRECTORY:
                whole = sorted(held)
                page, total = whole[offset : offset + limit], len(whole)
                if total > offset + limit:
                    snapshots.put(owner, path, version, whole)
            else:
                page, total = page_rows(itertools.chain(held, rows), offset, limit)
        except OSError as exc:
            raise map_sftp_error(exc, path, "list") from None
        except UnicodeDecodeError:
            raise NameNotUtf8(
                f"a name in {path} is not valid UTF-8; it cannot be listed", path=path
            ) from None
    names = resolve_ids(sftp, [own.st_uid, *(r[4] for r in page)], [own.st_gid, *(r[5] for r in page)], run)
    result = attr_metadata(path, own, names)
    if result["type"] == "symlink":
        result["target"] = readlink(sftp, path)
    entries = []
    for _, name, mode, size, uid, gid, mtime in page:
        attr = paramiko.SFTPAttributes()
        attr.st_mode, attr.st_size, attr.st_uid, attr.st_gid, attr.st_mtime = mode, size, uid, gid, mtime
        entry = attr_metadata(posixpath.join(path, name), attr, names)
        if entry["type"] == "symlink":
            entry["target"] = readlink(sftp, entry["path"])
        elif entry["type"] == "file":
            entry["mime"] = guess_mime(name)
            entry["text"] = None
        entries.append(entry)
    result.update(entries=entries, offset=offset, limit=limit, total=total)
    return result
