"""The progress file that an operation's worker rewrites, parsed (pure), and the states it may hold."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("copy", "move", "delete")
STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = frozenset({"done", "failed", "cancelled"})
_COUNTERS = ("bytes_done", "bytes_total", "files_done", "files_total")


@dataclass(frozen=True)
class Progress:
    """One reading of the progress file; a counter not known yet is None."""

    state: str
    bytes_done: int | None = None
    bytes_total: int | None = None
    files_done: int | None = None
    files_total: int | None = None
    # epoch seconds of the worker's last write
    updated: int | None = None
    error: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def _number(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


def parse_progress(text: str) -> Progress | None:
    """``key=value`` lines as run.sh writes them; None when there is no known state (an empty file)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value
    state = fields.get("state", "").strip()
    if state not in STATES:
        return None
    error = fields.get("error", "").strip() or None
    return Progress(
        state=state,
        **{name: _number(fields.get(name, "")) for name in _COUNTERS},
        updated=_number(fields.get("updated", "")),
        error=error,
    )


def format_progress(progress: Progress) -> str:
    """The file's text for ``progress`` (what the service writes for a relay or at creation)."""

    def show(value: int | None) -> str:
        return "" if value is None else str(value)

    error = (progress.error or "").replace("\n", " ").replace("\r", " ")[:900]
    return (
        f"state={progress.state}\n"
        + "".join(f"{name}={show(getattr(progress, name))}\n" for name in _COUNTERS)
        + f"updated={show(progress.updated)}\nerror={error}\n"
    )


def parse_pid(text: str) -> int | None:
    """The pid that ``run.sh --detach`` prints."""
    text = text.strip()
    return int(text) if text.isdigit() and int(text) > 1 else None


def parse_job_id(text: str) -> str | None:
    """``sbatch --parsable``: ``JOBID`` or ``JOBID;CLUSTER``."""
    job_id = text.strip().split(";", 1)[0]
    return job_id if job_id.isdigit() else None


def parse_du(text: str) -> int | None:
    """The first number of ``du -s`` output (``N<TAB>path``)."""
    first = text.split("\t", 1)[0].strip()
    return int(first) if first.isdigit() else None
