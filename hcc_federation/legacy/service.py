"""The legacy portal's file and job objects, built from the domain's calls (no Pyramid)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import paramiko

from .. import files
from ..files.metadata import readlink
from ..jobs.client import Recorded, SlurmClient
from ..jobs.validation import validate_job_id, validate_since, validate_user
from ..remote.result import CommandResult
from .commands import (
    DETAIL_FIELDS,
    LIST_FIELDS,
    STATE_INDEX,
    listing_argv,
    sacct_detail_argv,
    sacct_list_argv,
    top_argv,
)
from .parsers import listing_text, sacct_lines, sacct_values, top_by_node
from .paths import client_name

Runner = Callable[..., CommandResult]

# A text file larger than this is answered as a binary file (content null): the portal puts the
# whole text into an editor, and the JSON answer is held in memory.
MAX_TEXT_BYTES = 4 * 1024 * 1024

DIRECTORY = "directory"
TEXT_FILE = "text file"
SYMBOLIC_LINK = "symbolic link"
BINARY_FILE = "binary file"


def _object(given: str, kind: str, content: str | None) -> dict[str, Any]:
    return {"path": given, "name": client_name(given), "type": kind, "content": content}


def directory_object(run: Runner, given: str, path: str) -> dict[str, Any]:
    """A directory as the portal shows it: ``ls -lhoQ`` of it (a symlink to one: of its target's entries)."""
    result = run(listing_argv(path))
    if not result.ok:
        raise files.map_command_error(result, path)
    return _object(given, DIRECTORY, listing_text(result.text()))


def listed_directory(sftp: paramiko.SFTPClient, run: Runner, given: str, path: str) -> dict[str, Any]:
    """``directory_object`` of a path that must be a directory or a symlink to one (else NotADirectory)."""
    attr = files.lstat_path(sftp, path)
    kind = files.file_type(attr.st_mode)
    if kind == "symlink":
        try:
            target = sftp.stat(path)
        except OSError as exc:
            raise files.map_sftp_error(exc, path, "follow") from None
        if files.file_type(target.st_mode) == "directory":
            # the trailing "/" makes ls list the target's entries, not the link itself
            return directory_object(run, given, path.rstrip("/") + "/")
    elif kind == "directory":
        return directory_object(run, given, path)
    raise files.NotADirectory(f"not a directory: {path}", path=path)


def file_object(sftp: paramiko.SFTPClient, run: Runner, given: str, path: str) -> dict[str, Any]:
    """Any path as the portal shows it: a directory's listing, a text file's text, a symlink's target
    (``symbolic link to <target>``), or a binary file (content null).

    Text or binary is the rule of ``files.looks_like_text`` (the API's own), on the first bytes; a
    text file must also be UTF-8 and at most MAX_TEXT_BYTES long.
    """
    attr = files.lstat_path(sftp, path)
    kind = files.file_type(attr.st_mode)
    if kind == "directory":
        return directory_object(run, given, path)
    if kind == "symlink":
        return _object(given, SYMBOLIC_LINK, f"symbolic link to {readlink(sftp, path) or ''}")
    if kind == "file" and (attr.st_size or 0) <= MAX_TEXT_BYTES:
        try:
            with sftp.open(path, "rb") as handle:
                data = handle.read(MAX_TEXT_BYTES + 1)
        except OSError as exc:
            raise files.map_sftp_error(exc, path, "read") from None
        if len(data) <= MAX_TEXT_BYTES and files.looks_like_text(data[: files.SNIFF_BYTES]):
            try:
                return _object(given, TEXT_FILE, data.decode("utf-8"))
            except UnicodeDecodeError:
                pass
    return _object(given, BINARY_FILE, None)


def job_table(client: SlurmClient, user: str, day: str) -> dict[str, Any]:
    """The user's jobs since a day, one ``sacct -p`` line each, with the time they were read."""
    user = validate_user(user)
    since = validate_since(day)
    text = client.accounting_text(sacct_list_argv(user, since))
    return {"timestamp": time.time(), "fields": list(LIST_FIELDS), "values": sacct_lines(text)}


def job_detail(
    client: SlurmClient, run: Runner, user: str, job_id: str, recorded: Recorded | None = None
) -> dict[str, Any]:
    """One of the user's jobs as one ``sacct -p`` line cut into its 15 fields and, while it runs,
    ``top -b -n 1`` of the user's processes on each of its nodes; with ``stdout`` and ``stderr``,
    the paths of its output as /api/v1's detail gives them (None where they cannot be known), keys
    the old portal ignores.

    Whose job it is, and whether it exists, is the domain's rule (``SlurmClient.locate_job``:
    JobNotFound, JobForbidden), checked before anything else is read.
    """
    job_id = validate_job_id(job_id)
    job, output = client.locate_job_output(user, job_id, recorded)
    values = sacct_values(client.accounting_text(sacct_detail_argv(job["id"])))
    if values is None or len(values) != len(DETAIL_FIELDS):
        # queued but not yet in accounting (slurmdbd lags): what the queue knows, in sacct's columns
        values = [""] * len(DETAIL_FIELDS)
        values[0], values[1] = job["id"], job.get("name") or ""
        values[2], values[3] = job.get("partition") or "", job.get("account") or ""
        values[4], values[STATE_INDEX] = job.get("user") or user, job["state"]
        values[-1] = job.get("nodes") or ""
    nodes: dict[str, str] = {}
    if values[STATE_INDEX] == "RUNNING" and job.get("nodes") and job.get("node_count"):
        result = run(top_argv(job["id"], job["nodes"], job["node_count"]))
        # a job that ends between the two calls refuses new steps: no nodes, as once it has ended
        if result.ok:
            nodes = top_by_node(result.text())
    return {
        "timestamp": time.time(),
        "fields": list(DETAIL_FIELDS),
        "values": values,
        "nodes": nodes,
        "stdout": output.stdout,
        "stderr": output.stderr,
    }
