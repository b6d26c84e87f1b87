"""Directory listings, one page at a time in memory bounded by the page."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import operator
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _escape  # what json.dumps escapes strings with
from typing import Any

import paramiko

from hcc_federation.errors import InvalidArgument
from hcc_federation.remote.errors import OutputTooLarge
from hcc_federation.remote.paramiko_compat import DirectoryRow, MalformedAnswer, read_directory_rows

from ..timefmt import rfc3339
from .errors import LinkLost, ListingTooLarge, NameNotUtf8, NotADirectory, map_sftp_error
from .metadata import IdNames, Runner, attr_metadata, file_type, listing_mime, readlink, resolve_ids
from .paths import validate_path

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
# The most entries a whole listing (GET /files?all=true) holds: ~250 bytes of rows and ~230 of JSON
# text each. A larger directory is listed in pages.
MAX_WHOLE_LISTING = 100_000


# ---------------------------------------------------------------------------------------- listing

# (rank, name, mode, size, uid, gid, mtime), as the directory reader makes them: rank 0 sorts
# directories first, then names in code point order (see paramiko_compat.DirectoryRow).
_Row = DirectoryRow


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
            # expired snapshots go now, not only when their own key is asked again: after a burst
            # of large listings nobody pages on, they held up to MAX_ROWS rows (about 47 MiB) and
            # their connections for good (the RSS bench's finding, issue 14)
            now = self._clock()
            for old in [k for k, kept in self._snapshots.items() if not 0 <= now - kept[1] < self.ttl]:
                self._drop(old)
            self._snapshots[key] = (owner, now, version, rows)
            self._rows += len(rows)
            while self._rows > self.MAX_ROWS:
                self._drop(next(iter(self._snapshots)))

    def __len__(self) -> int:
        return len(self._snapshots)

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

    See ``read_page``; this is its answer as a dict (``DirectoryPage.as_dict``).
    """
    page = read_page(sftp, path, offset=offset, limit=limit, run=run, attr=attr, snapshots=snapshots)
    return page.as_dict()


@dataclass(frozen=True)
class DirectoryPage:
    """One page of a directory, read: everything its answer needs, with no remote call left to make.

    ``meta``: the directory's own metadata (attr_metadata, with its ``target`` if it is a symlink);
    ``rows``: the page's rows, sorted; ``names``: owner and group names of their ids; ``targets``:
    the target of each symlink of the page, by name.
    """

    path: str
    meta: dict[str, Any]
    rows: list[_Row]
    names: IdNames
    targets: dict[str, str | None]
    offset: int
    limit: int
    total: int

    def as_dict(self) -> dict[str, Any]:
        """The answer of GET /files for the page, as a dict of JSON values."""
        entries = page_entries(self.path, self.rows, self.names, self.targets)
        return {
            **self.meta,
            "entries": entries,
            "offset": self.offset,
            "limit": self.limit,
            "total": self.total,
        }

    def json_chunks(self, batch: int = 1000) -> Iterator[bytes]:
        """The same answer as ``as_dict``, as JSON text (UTF-8, ASCII escapes as json.dumps makes
        them), ``batch`` entries per chunk: a whole listing of 100,000 entries is never held as
        dicts, nor as one string (see ``EntryEncoder``)."""
        head = json.dumps(self.meta)
        yield (head[:-1] + ', "entries": [').encode()
        encoder = EntryEncoder(self.path, self.names, self.targets)
        for start in range(0, len(self.rows), batch):
            text = encoder.encode(self.rows[start : start + batch])
            yield (text if start == 0 else ", " + text).encode()
        yield f'], "offset": {self.offset}, "limit": {self.limit}, "total": {self.total}}}'.encode()


def read_page(
    sftp: paramiko.SFTPClient,
    path: str,
    *,
    offset: int = 0,
    limit: int | None = DEFAULT_LIST_LIMIT,
    run: Runner | None = None,
    attr: paramiko.SFTPAttributes | None = None,
    snapshots: ListingSnapshots | None = None,
) -> DirectoryPage:
    """One page of a directory (directories first, then by name), or all of it from ``offset`` on.

    Streams the listing (``read_directory_rows``) and keeps only the offset+limit smallest rows, so
    memory is bounded by the page, not by the directory. Entries carry ``mime`` guessed from the
    name and ``text: None``: sniffing would cost an open/read/close per file of the page. A symlink
    to a directory is listed (the symlink's own metadata comes first). ``attr``: the path's
    ``lstat_path``, when the caller already has it (saves a round trip). ``snapshots``: where a
    large directory's sorted listing is kept for its next pages (see ListingSnapshots); then a
    directory with more entries than the page is held whole, once, instead of offset + limit rows.

    ``limit`` None: every entry from ``offset`` on, in one page whose ``limit`` is the number of
    its entries, for a directory of at most MAX_WHOLE_LISTING entries (ListingTooLarge past it,
    found out after reading that many: memory stays bounded).
    """
    path = validate_path(path)
    whole_listing = limit is None
    offset, limit = check_paging(offset, 0 if limit is None else limit)
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
        if whole_listing:
            limit = max(len(kept) - offset, 0)
        page, total = kept[offset : offset + limit], len(kept)
    elif whole_listing and (found := _find_rows(run, path)) is not None:
        whole = sorted(found)
        page, total = whole[offset:], len(whole)
        limit = len(page)
    else:
        try:
            with contextlib.closing(read_directory_rows(sftp, path)) as reader:
                rows = itertools.chain.from_iterable(reader)
                if whole_listing:
                    held = list(itertools.islice(rows, MAX_WHOLE_LISTING + 1))
                    if len(held) > MAX_WHOLE_LISTING:
                        raise _too_large(path)
                    whole = sorted(held)
                    page, total = whole[offset:], len(whole)
                    limit = len(page)
                else:
                    page, total = _sorted_page(rows, offset, limit, snapshots, owner, path, version)
        except OSError as exc:
            raise map_sftp_error(exc, path, "list") from None
        except MalformedAnswer as exc:
            raise LinkLost(f"the cluster's answer was garbled while listing {path}: {exc}") from None
        except UnicodeDecodeError:
            raise NameNotUtf8(
                f"a name in {path} is not valid UTF-8; it cannot be listed", path=path
            ) from None
    names = resolve_ids(sftp, [own.st_uid, *(r[4] for r in page)], [own.st_gid, *(r[5] for r in page)], run)
    meta = attr_metadata(path, own, names)
    if meta["type"] == "symlink":
        meta["target"] = readlink(sftp, path)
    prefix = _prefix(path)
    targets = {r[1]: readlink(sftp, prefix + r[1]) for r in page if r[2] & _S_IFMT == _S_IFLNK}
    return DirectoryPage(path, meta, page, names, targets, offset, limit, total)


# One record per entry, NUL-terminated, the name last (it may hold spaces and newlines, never NUL):
# type letter, permission bits (octal, with set-id and sticky bits), size, uid, gid, mtime (seconds
# with a fraction), the name. find's lstat is what sftp-server's READDIR reports.
_FIND_FORMAT = "%y %m %s %U %G %T@ %P\\0"
_FIND_TYPES = {
    b"f": stat.S_IFREG,
    b"d": stat.S_IFDIR,
    b"l": stat.S_IFLNK,
    b"b": stat.S_IFBLK,
    b"c": stat.S_IFCHR,
    b"p": stat.S_IFIFO,
    b"s": stat.S_IFSOCK,
}


def find_listing_argv(path: str) -> list[str]:
    """GNU find listing a directory's entries (not ``.`` or ``..``), for ``parse_find_listing``.

    ``-H``: a path that is a symlink to a directory lists the directory, as SFTP's OPENDIR does.
    The path is absolute (validate_path), so find cannot take it for an option or an expression.
    """
    return [
        "env", "LC_ALL=C", "find", "-H", path, "-mindepth", "1", "-maxdepth", "1", "-printf", _FIND_FORMAT,
    ]  # fmt: skip


# One record of that output. No minus sign: a time before 1970 does not parse (SFTP's 32-bit time
# wraps it; find prints it signed).
_FIND_FIELDS = re.compile(
    rb"([fdlbcps]) ([0-7]{1,7}) ([0-9]{1,20}) ([0-9]{1,10}) ([0-9]{1,10}) ([0-9]{1,20})\.([0-9]+) ([^\0/]+)\0"
)
# what a record holds besides its fields: six spaces, a dot and the NUL
_FIND_SEPARATORS = 8
# records parsed at a time: the fields of a batch are held as bytes objects (~400 bytes a record)
_FIND_BATCH_BYTES = 1 << 20


def parse_find_listing(output: bytes) -> list[_Row] | None:
    """The DirectoryRows of ``find_listing_argv``'s output (unsorted), or None when any record is
    not what SFTP would report the same way: then the caller reads the directory over SFTP.

    None for a record cut short or garbled, a type SFTP has no bits for (a Solaris door), a time
    before 1970, or a name that is not UTF-8 (SFTP's reading then gives the usual error). Times
    from 2106 on wrap as SFTP's do. Parsed column by column with C loops (re, map), about 1 MiB
    of output at a time: a loop in Python over 10,000 records cost more than SFTP's answers saved,
    and the fields of 100,000 records at once held ~45 MiB.
    """
    rows: list[_Row] = []
    start = 0
    while start < len(output):
        end = output.rfind(b"\0", start, start + _FIND_BATCH_BYTES) + 1
        if end <= start:  # no record end within a batch: past any record's size
            return None
        batch = output[start:end]
        records = _FIND_FIELDS.findall(batch)
        # every byte is in a record: a garbled one is neither skipped nor read from its middle
        fields = sum(sum(map(len, map(operator.itemgetter(i), records))) for i in range(8))
        if fields + _FIND_SEPARATORS * len(records) != len(batch):
            return None
        parsed = _find_batch(records)
        if parsed is None:
            return None
        rows += parsed
        start = end
    return rows


def _find_batch(records: list[tuple[bytes, ...]]) -> list[_Row] | None:
    get = operator.itemgetter
    try:
        names = list(map(bytes.decode, map(get(7), records)))
    except UnicodeDecodeError:
        return None
    formats = list(map(_FIND_TYPES.__getitem__, map(get(0), records)))
    modes = map(operator.or_, formats, map(int, map(get(1), records), itertools.repeat(8)))
    ranks = [0 if f == stat.S_IFDIR else 1 for f in formats]
    numbers = (map(int, map(get(i), records)) for i in (2, 3, 4))
    # SFTP v3 sends times as 32-bit unsigned: the same wrap for a time from 2106 on
    times = map(operator.and_, map(int, map(get(5), records)), itertools.repeat(0xFFFFFFFF))
    return list(zip(ranks, names, modes, *numbers, times, strict=True))


def _find_rows(run: Runner | None, path: str) -> list[_Row] | None:
    """A whole directory's rows by one ``find`` on the cluster, or None to read it over SFTP.

    sftp-server formats an ``ls -l`` line for every entry and answers 100 entries a round trip:
    a 10,000-entry directory cost the cluster ~66 ms of CPU and this process ~40 ms; find writes
    ~40 bytes an entry in one stream. SFTP stays the reference: any failure of find (an entry it
    could not stat, a directory it may not read, output past the cap) or output that does not parse
    falls back to it, so the answer and its errors are SFTP's. ListingTooLarge past MAX_WHOLE_LISTING.
    """
    if run is None:
        return None
    try:
        result = run(find_listing_argv(path))
    except OutputTooLarge:
        return None  # SFTP reads it, and stops past MAX_WHOLE_LISTING
    if not result.ok or result.stderr:
        return None
    rows = parse_find_listing(result.stdout)
    if rows is not None and len(rows) > MAX_WHOLE_LISTING:
        raise _too_large(path)
    return rows


def _too_large(path: str) -> ListingTooLarge:
    return ListingTooLarge(f"{path} holds more than {MAX_WHOLE_LISTING} entries: list it in pages", path=path)


def _sorted_page(
    rows: Iterator[_Row],
    offset: int,
    limit: int,
    snapshots: ListingSnapshots | None,
    owner: object,
    path: str,
    version: tuple,
) -> tuple[list[_Row], int]:
    """(the page, total) of a directory's rows read afresh, a snapshot kept when pages follow."""
    # up to a snapshot's bound the rows are held and sorted once; past it, the rest is
    # streamed through the page's heap and no snapshot is kept (memory stays bounded)
    held = list(itertools.islice(rows, snapshots.MAX_DIRECTORY + 1)) if snapshots is not None else []
    if snapshots is not None and len(held) <= snapshots.MAX_DIRECTORY:
        whole = sorted(held)
        if len(whole) > offset + limit:
            snapshots.put(owner, path, version, whole)
        return whole[offset : offset + limit], len(whole)
    return page_rows(itertools.chain(held, rows), offset, limit)


_S_IFMT, _S_IFLNK = 0o170000, 0o120000


def _prefix(path: str) -> str:
    # posixpath.join(path, name) for a name (no "/"): path is absolute, so never empty
    return path if path.endswith("/") else path + "/"


def page_entries(
    path: str, page: Iterable[_Row], names: IdNames, targets: dict[str, str | None]
) -> list[dict[str, Any]]:
    """The listing's entries of ``page``: what ``attr_metadata`` and ``guess_mime`` make of each row
    (their fields, values and order), ``target`` for a symlink (from ``targets``, by name), ``mime``
    and ``text: None`` for a file.

    Built inline, with what many entries share worked out once (a mode's type and octal bits, a
    time's text, a suffix's MIME type): calling attr_metadata per entry cost ~25 us, a quarter of
    a 10,000-entry listing's time.
    """
    prefix = _prefix(path)
    users, groups = names.users, names.groups
    modes: dict[int, tuple[str, str]] = {}
    times: dict[int, str | None] = {}
    entries: list[dict[str, Any]] = []
    append = entries.append
    for _, name, mode, size, uid, gid, mtime in page:
        described = modes.get(mode)
        if described is None:
            described = modes[mode] = (file_type(mode), f"{stat.S_IMODE(mode):04o}")
        kind, bits = described
        when = times.get(mtime, _NO_TIME)
        if when is _NO_TIME:
            when = times[mtime] = rfc3339(mtime)
        owner = users.get(uid)
        if owner is None:
            owner = str(uid)
        group = groups.get(gid)
        if group is None:
            group = str(gid)
        entry = {
            "path": prefix + name,
            "name": name or "/",
            "type": kind,
            "size": size,
            "mode": bits,
            "owner": owner,
            "group": group,
            "mtime": when,
        }
        if kind == "file":
            entry["mime"] = listing_mime(name)
            entry["text"] = None
        elif kind == "symlink":
            entry["target"] = targets.get(name)
        append(entry)
    return entries


_NO_TIME = object()


class EntryEncoder:
    """Entries of a listing written straight to JSON text: the JSON values, in the order, that
    ``page_entries`` makes.

    json.dumps of page_entries took ~2.5-4 us an entry (its C encoder tracks every container for
    cycles), after ~2 us to build the dicts; here each entry is one f-string from its row, strings
    escaped as json.dumps escapes them (``encode_basestring_ascii``), and what entries share (a
    mode's type and bits, a time, an owner, a group, a MIME type) is escaped once.
    """

    def __init__(self, path: str, names: IdNames, targets: dict[str, str | None]) -> None:
        self._prefix = _prefix(path)
        self._names = names
        self._targets = targets
        # mode -> (type, '"type": "...", "size": ' pieces), see encode
        self._modes: dict[int, tuple[str, str]] = {}
        self._times: dict[int, str] = {}
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}
        self._mimes: dict[str, str] = {}

    def encode(self, rows: Iterable[_Row]) -> str:
        """The rows' entries, a JSON object each, joined by ", " (no brackets)."""
        prefix = self._prefix
        modes, times, users, groups = self._modes, self._times, self._users, self._groups
        parts: list[str] = []
        append = parts.append
        for _, name, mode, size, uid, gid, mtime in rows:
            described = modes.get(mode)
            if described is None:
                kind = file_type(mode)
                described = modes[mode] = (kind, f'"{kind}"', f'"{stat.S_IMODE(mode):04o}"')
            kind, kind_text, bits = described
            when = times.get(mtime)
            if when is None:
                when = times[mtime] = _escape(rfc3339(mtime))
            owner = users.get(uid)
            if owner is None:
                found = self._names.users.get(uid)
                owner = users[uid] = _escape(str(uid) if found is None else found)
            group = groups.get(gid)
            if group is None:
                found = self._names.groups.get(gid)
                group = groups[gid] = _escape(str(gid) if found is None else found)
            if kind == "file":
                mime = listing_mime(name)
                mime_text = self._mimes.get(mime)
                if mime_text is None:
                    mime_text = self._mimes[mime] = _escape(mime)
                tail = f', "mime": {mime_text}, "text": null'
            elif kind == "symlink":
                target = self._targets.get(name)
                tail = f', "target": {"null" if target is None else _escape(target)}'
            else:
                tail = ""
            append(
                f'{{"path": {_escape(prefix + name)}, "name": {_escape(name or "/")}, "type": {kind_text}, '
                f'"size": {size}, "mode": {bits}, "owner": {owner}, "group": {group}, "mtime": {when}{tail}}}'
            )
        return ", ".join(parts)
