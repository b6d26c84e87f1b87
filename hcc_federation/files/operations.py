"""Directories and names: mkdir, touch, move, copy and delete."""

from __future__ import annotations

import contextlib
import posixpath
import stat
from typing import Any

import paramiko

from hcc_federation.errors import InvalidArgument

from .errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidMove,
    NoSuchPath,
    NotADirectory,
    classify_failure,
    map_command_error,
    map_sftp_error,
)
from .metadata import Runner, get_metadata, lstat_or_none
from .paths import validate_path

# ------------------------------------------------------------------------ directories and names


def make_directory(
    sftp: paramiko.SFTPClient, path: str, *, parents: bool = False, run: Runner | None = None
) -> tuple[bool, dict[str, Any]]:
    """mkdir (``parents``: like ``mkdir -p``, an existing directory is fine); returns (created, metadata)."""
    path = validate_path(path)
    if not parents:
        try:
            sftp.mkdir(path)
        except OSError as exc:
            raise classify_failure(sftp, exc, path, "create the directory") from None
        return True, get_metadata(sftp, path, run=run)
    created = False
    current = "/"
    for component in path.split("/")[1:]:
        if not component:
            continue
        current = posixpath.join(current, component)
        try:
            attr = sftp.stat(current)
        except FileNotFoundError:
            try:
                sftp.mkdir(current)
                created = True
                continue
            except OSError as exc:
                attr = lstat_or_none(sftp, current)
                if attr is None:  # not a lost race with another mkdir: a real failure
                    raise classify_failure(sftp, exc, current, "create the directory") from None
        except OSError as exc:
            raise map_sftp_error(exc, current, "look at") from None
        if not stat.S_ISDIR(attr.st_mode or 0):
            raise NotADirectory(f"not a directory: {current}", path=current)
    return created, get_metadata(sftp, path, run=run)


def touch(sftp: paramiko.SFTPClient, path: str, *, run: Runner | None = None) -> tuple[bool, dict[str, Any]]:
    """Create an empty file if missing, else set its mtime to now; returns (created, metadata).

    "now" is this host's clock (SFTP sets times, it has no "now"): keep the clocks in sync (NTP).
    """
    path = validate_path(path)
    attr = lstat_or_none(sftp, path)
    try:
        if attr is None:
            # Append mode creates without truncating, so a file created meanwhile keeps its content.
            sftp.open(path, "ab").close()
        else:
            sftp.utime(path, None)
    except OSError as exc:
        raise classify_failure(sftp, exc, path, "touch") from None
    return attr is None, get_metadata(sftp, path, run=run, sniff=False)


def _check_not_inside(path: str, to: str) -> None:
    if to == path or to.startswith(path.rstrip("/") + "/"):
        raise InvalidMove(f"cannot put {path} inside itself ({to})", path=to, field="to")


def move(sftp: paramiko.SFTPClient, path: str, to: str, *, run: Runner | None = None) -> dict[str, Any]:
    """Rename ``path`` to ``to``; an existing ``to`` is never replaced. Returns the new metadata.

    OpenSSH's plain SFTP rename links then unlinks a regular file (link() fails on an existing
    name: race free) and checks-then-renames anything else; we also check first for a clear error.
    Across file systems the cluster refuses (500 with its message): copy, then delete.
    """
    path = validate_path(path)
    to = validate_path(to, name="to")
    if path == "/":
        raise InvalidArgument("cannot move /", field="path")
    if lstat_or_none(sftp, path) is None:
        raise NoSuchPath(f"no such file or directory: {path}", path=path)
    _check_not_inside(path, to)
    if lstat_or_none(sftp, to) is not None:
        raise AlreadyExists(f"already exists: {to}", path=to, field="to")
    try:
        sftp.rename(path, to)
    except OSError as exc:
        if lstat_or_none(sftp, to) is not None:
            raise AlreadyExists(f"already exists: {to}", path=to, field="to") from None
        if isinstance(exc, FileNotFoundError) and lstat_or_none(sftp, path) is not None:
            parent = posixpath.dirname(to)
            raise NoSuchPath(f"no such directory: {parent}", path=parent, field="to") from None
        raise map_sftp_error(exc, path, f"move to {to}") from None
    return get_metadata(sftp, to, run=run, sniff=False)


def copy_argv(path: str, to: str) -> list[str]:
    """``cp`` of a tree onto a name that must not exist; ``--`` so that a name like ``-rf`` is a name.

    ``env LC_ALL=C`` pins the messages that ``map_command_error`` reads to English.
    """
    return ["env", "LC_ALL=C", "cp", "-R", "-p", "-T", "-n", "--", path, to]


def remove_tree_argv(path: str) -> list[str]:
    return ["env", "LC_ALL=C", "rm", "-r", "-f", "--one-file-system", "--", path]


def copy(sftp: paramiko.SFTPClient, run: Runner, path: str, to: str) -> dict[str, Any]:
    """Copy a file or a directory tree on the cluster (``cp -R -p -T -n``); returns the copy's metadata.

    The data never travels through the service. ``to`` must not exist (409). ``-T`` makes ``to`` the
    copy itself even if a directory of that name appears meanwhile (instead of ``to/<name>``), and
    ``-n`` never overwrites a file that appeared meanwhile. ``-R`` copies symlinks as symlinks.
    ``-p`` keeps modes and times (ownership silently becomes the user's). If ``cp`` fails, the
    partial copy is removed, so a failed copy leaves nothing.
    """
    path = validate_path(path)
    to = validate_path(to, name="to")
    source = lstat_or_none(sftp, path)
    if source is None:
        raise NoSuchPath(f"no such file or directory: {path}", path=path)
    if stat.S_ISDIR(source.st_mode or 0):
        _check_not_inside(path, to)
    if lstat_or_none(sftp, to) is not None:
        raise AlreadyExists(f"already exists: {to}", path=to, field="to")
    try:
        result = run(copy_argv(path, to))
    except Exception:
        # a timeout stopped cp part way (or the connection dropped): no half copy stays behind
        _remove_partial(sftp, run, to)
        raise
    if not result.ok:
        _remove_partial(sftp, run, to)
        raise map_command_error(result, path)
    return get_metadata(sftp, to, run=run, sniff=False)


def _remove_partial(sftp: paramiko.SFTPClient, run: Runner, to: str) -> None:
    """Best effort: the copy's own error is what the caller must see, not this clean-up's."""
    with contextlib.suppress(Exception):
        if lstat_or_none(sftp, to) is not None:
            run(remove_tree_argv(to))


def delete(
    sftp: paramiko.SFTPClient, path: str, *, recursive: bool = False, run: Runner | None = None
) -> None:
    """Delete a file, a symlink (not its target) or an empty directory; ``recursive`` for a tree.

    A tree is removed on the cluster by ``rm -r -f --one-file-system`` in one command: an SFTP walk
    would cost round trips per entry and memory per level, where ``rm`` never follows symlinks and
    does not cross into other mounts. ``-f`` because no prompt can be answered. A failure part way
    leaves what could not be removed and raises with ``rm``'s message.
    """
    path = validate_path(path)
    if path == "/":
        raise InvalidArgument("refusing to delete /", field="path")
    attr = lstat_or_none(sftp, path)
    if attr is None:
        raise NoSuchPath(f"no such file or directory: {path}", path=path)
    if not stat.S_ISDIR(attr.st_mode or 0):
        try:
            sftp.remove(path)
        except OSError as exc:
            raise classify_failure(sftp, exc, path, "delete") from None
        return
    if recursive:
        if run is None:
            raise TypeError("a recursive delete needs a runner")
        result = run(remove_tree_argv(path))
        if not result.ok:
            raise map_command_error(result, path)
        return
    try:
        sftp.rmdir(path)
    except OSError as exc:
        if lstat_or_none(sftp, path) is not None and _has_entries(sftp, path):
            raise DirectoryNotEmpty(f"directory not empty: {path}", path=path) from None
        raise classify_failure(sftp, exc, path, "delete") from None


def _has_entries(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        # listdir reads the whole directory, but only when rmdir already failed, usually on a small one.
        return bool(sftp.listdir(path))
    except OSError:
        return False
