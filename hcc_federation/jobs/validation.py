"""Validation of everything that reaches a Slurm command's argv, before anything runs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, timedelta

from .errors import InvalidJobArgument

# Plain 123, array task 123_4, heterogeneous component 123+1; ASCII digits only ([0-9], not \d,
# which would accept other scripts' digits) and fullmatch, so a trailing newline cannot slip in.
# The OpenAPI document gives the same pattern for the job_id path parameter.
JOB_ID_PATTERN = r"[0-9]{1,10}(_[0-9]{1,10}|\+[0-9]{1,5})?"
_JOB_ID = re.compile(JOB_ID_PATTERN)
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

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
# Below the API's request body limit (hcc.api.max_body_bytes, 1 MiB by default, which answers 413
# first) and below Slurm's own max_script_size (4 MiB by default): a batch script is a page of shell.
# The API's schema and the domain client check this one number (they said 1 and 4 MiB).
MAX_SCRIPT_BYTES = 1024 * 1024


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
    if isinstance(since, str) and DATE.fullmatch(since):
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


def script_problem(script: object) -> str | None:
    """What is wrong with a batch script's text, or None: the rule of the API schema and the client."""
    if not isinstance(script, str) or not script.strip():
        return "must not be empty"
    if "\x00" in script:
        return "must not contain NUL characters"
    try:
        size = len(script.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be Unicode text (no lone surrogates)"
    if size > MAX_SCRIPT_BYTES:
        return f"must be at most {MAX_SCRIPT_BYTES} bytes"
    return None


def validate_script(script: object) -> bytes:
    """The script's UTF-8 bytes for sbatch's stdin, or ``InvalidJobArgument``."""
    problem = script_problem(script)
    if problem is not None:
        raise InvalidJobArgument(f"script {problem}", field="script")
    return script.encode("utf-8")  # type: ignore[union-attr]


def validate_job_name(name: object) -> str:
    # Slurm itself takes any byte but NUL (even newlines); we refuse control characters in the
    # names we submit so they cannot forge lines in logs or terminals.
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH or CONTROL.search(name):
        raise InvalidJobArgument(
            f"name must be 1 to {MAX_NAME_LENGTH} characters without control characters",
            field="name",
        )
    return name
