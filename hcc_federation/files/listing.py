"""Directory listings, one page at a time in memory bounded by the page."""

from __future__ import annotations

import heapq
import posixpath
import stat
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
) -> dict[str, Any]:
    """The directory's metadata plus ``entries`` (one page), ``offset``, ``limit`` and ``total``.

    Streams the listing (``read_directory``) and keeps only the offset+limit smallest rows, so memory is
    bounded by the page, not by the directory. Entries carry ``mime`` guessed from the name and
    ``text: None``: sniffing would cost an open/read/close per file of the page. A symlink to a
    directory is listed (the symlink's own metadata comes first). ``attr``: the path's ``lstat_path``,
    when the caller already has it (saves a round trip).
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
    try:
        page, total = page_rows((_row(attr) for attr in read_directory(sftp, path)), offset, limit)
    except OSError as exc:
        raise map_sftp_error(exc, path, "list") from None
    except UnicodeDecodeError:
        raise NameNotUtf8(f"a name in {path} is not valid UTF-8; it cannot be listed", path=path) from None
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
