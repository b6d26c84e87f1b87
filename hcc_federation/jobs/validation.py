"""Validation of everything that reaches a Slurm command's argv, before anything runs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, timedelta

from .errors import InvalidJobArgument

# Plain 123, array task 123_4, heterogeneous component 123+1; ASCII digits only ([0-9], not \d,
# which would accept other scripts' digits) and fullmatch, so a trailing newline cannot slip in.
_JOB_ID = re.compile(r"[0-9]{1,10}(?:_[0-9]{1,10}|\+[0-9]{1,5})?")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Every base job state of Slurm 22.05 (slurm.h job_state_string), which is what we report.
JOB_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "COMPLETING",
        "CONFIGURING",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PENDING",
        "PREEMPTED",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "REVOKED",
        "RUNNING",
        "SIGNALING",
        "SPECIAL_EXIT",
        "STAGE_OUT",
        "STOPPED",
        "SUSPENDED",
        "TIMEOUT",
    }
)
# States after which a job can no longer be cancelled and has an exit code.
FINISHED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)

DEFAULT_SINCE_DAYS = 7
MAX_LIMIT = 10_000
MAX_NAME_LENGTH = 200
TOP_PROCESSES = 10


def validate_job_id(job_id: object) -> str:
    """Return ``job_id`` if it is ``123``, ``123_4`` or ``123+1``; else ``InvalidJobArgument``."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise InvalidJobArgument(
            "job id must look like 123, 123_4 (array task) or 123+1 (heterogeneous component)",
            field="job_id",
        )
    return job_id


def validate_user(user: object) -> str:
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise InvalidJobArgument("invalid user name", field="user")
    return user


def validate_since(since: date | str | None, *, today: date | None = None) -> str:
    """``YYYY-MM-DD`` for ``sacct -S``; None means ``DEFAULT_SINCE_DAYS`` days ago."""
    if since is None:
        return ((today or date.today()) - timedelta(days=DEFAULT_SINCE_DAYS)).isoformat()
    if isinstance(since, date):
        return since.isoformat()
    if isinstance(since, str) and _DATE.fullmatch(since):
        try:
            return date.fromisoformat(since).isoformat()
        except ValueError:
            pass
    raise InvalidJobArgument("since must be a date YYYY-MM-DD", field="since")


def validate_states(states: Iterable[str] | None) -> frozenset[str] | None:
    """Upper-cased Slurm state names (``running``, ``PENDING``...); unknown names are refused."""
    if states is None:
        return None
    if isinstance(states, str):
        states = [states]
    wanted = set()
    for state in states:
        name = state.strip().upper() if isinstance(state, str) else ""
        if name not in JOB_STATES:
            raise InvalidJobArgument(
                f"unknown job state {state!r}; expected one of {', '.join(sorted(JOB_STATES))}",
                field="states",
            )
        wanted.add(name)
    return frozenset(wanted) or None


def validate_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidJobArgument(f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit")
    return limit


def validate_absolute_path(path: object, *, name: str) -> str:
    """An absolute path with no NUL (argv cannot carry one); the remote side decides if it exists."""
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path or len(path) > 4096:
        raise InvalidJobArgument(f"{name} must be an absolute path", field=name)
    return path


def validate_job_name(name: object) -> str:
    # Slurm itself takes any byte but NUL (even newlines); we refuse control characters in the
    # names we submit so they cannot forge lines in logs or terminals.
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH or _CONTROL.search(name):
        raise InvalidJobArgument(
            f"name must be 1 to {MAX_NAME_LENGTH} characters without control characters",
            field="name",
        )
    return name
