"""The jobs API's colander schemas for requests, and its response documents for the OpenAPI document."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import colander

from ..api.schemas import PathString, StrictSchema, StrictString
from ..timefmt import JSON_SCHEMA as TIME
from ..timefmt import nullable
from .output import STREAMS
from .validation import (
    CONTROL,
    DATE,
    DEFAULT_SINCE_DAYS,
    JOB_STATES,
    MAX_LIMIT,
    MAX_NAME_LENGTH,
    script_problem,
)

MAX_PATH_LENGTH = 4096
# The accounting database starts at the epoch; an earlier day is a client's mistake.
EARLIEST_SINCE = date(1970, 1, 2)
# The time zone farthest ahead of UTC (Kiribati's Line Islands): its today is the latest anywhere.
LATEST_UTC_OFFSET = timedelta(hours=14)


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


class IsoDate(colander.SchemaType):
    """Exactly ``YYYY-MM-DD`` (colander.Date also takes datetimes and other ISO 8601 forms)."""

    json_schema = {"format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}

    def deserialize(self, node, cstruct):
        if cstruct is colander.null:
            return colander.null
        if not isinstance(cstruct, str) or not DATE.fullmatch(cstruct):
            raise colander.Invalid(node, "must be a date YYYY-MM-DD")
        try:
            value = date.fromisoformat(cstruct)
        except ValueError:
            raise colander.Invalid(node, f"{cstruct} is not a valid date") from None
        if value < EARLIEST_SINCE:
            raise colander.Invalid(node, f"must not be before {EARLIEST_SINCE.isoformat()}")
        # A day that is today nowhere on Earth yet is a client's mistake (a mistyped year), not a
        # filter that matches nothing: 400. A day that is today somewhere (up to UTC+14) is
        # accepted, and where it has not begun on the cluster the history is simply empty.
        latest = (datetime.now(UTC) + LATEST_UTC_OFFSET).date()
        if value > latest:
            raise colander.Invalid(node, f"must not be in the future (after {latest.isoformat()})")
        return value

    def serialize(self, node, appstruct):
        return colander.null if appstruct is colander.null else appstruct.isoformat()


class StateList(colander.SchemaType):
    """A comma-separated list of Slurm job states, case-insensitive: ``RUNNING,pending``."""

    # the documented form, upper case (lower case and spaces are accepted too)
    json_schema = {
        "maxLength": 1000,
        "pattern": "^({0})(,({0}))*$".format("|".join(sorted(JOB_STATES))),
    }

    def deserialize(self, node, cstruct):
        if cstruct is colander.null:
            return colander.null
        # a repeated query key arrives as a list: one comma list is the documented form
        if not isinstance(cstruct, str):
            raise colander.Invalid(node, "must be one comma-separated list of job states")
        if len(cstruct) > 1000:
            raise colander.Invalid(node, "too long")
        names = [part.strip().upper() for part in cstruct.split(",")]
        names = [name for name in names if name]
        if not names:
            raise colander.Invalid(node, "must name at least one job state")
        unknown = sorted({name for name in names if name not in JOB_STATES})
        if unknown:
            known = ", ".join(sorted(JOB_STATES))
            raise colander.Invalid(
                node, f"unknown job state {', '.join(unknown)[:200]}; expected some of {known}"
            )
        return sorted(set(names))

    def serialize(self, node, appstruct):
        return colander.null if appstruct is colander.null else ",".join(appstruct)


# 2**62: a byte position of any file there is (an off_t ends at 2**63), and no bigger int reaches dd
MAX_BYTE_POSITION = 2**62


class OutputQuerySchema(StrictSchema):
    stream = colander.SchemaNode(
        colander.String(),
        missing="stdout",
        validator=colander.OneOf(STREAMS),
        description="which of the job's files: stdout or stderr (the same file unless --error was given)",
    )
    tail = colander.SchemaNode(
        colander.Int(),
        missing=None,
        validator=colander.Range(0, MAX_BYTE_POSITION),
        description="only the last this many bytes (not with offset)",
    )
    offset = colander.SchemaNode(
        colander.Int(),
        missing=None,
        validator=colander.Range(0, MAX_BYTE_POSITION),
        description="the bytes from this position on, e.g. an earlier answer's X-Output-Size (not with tail)",
    )
    follow = colander.SchemaNode(
        # only these four spellings: a typo such as "ture" must not silently mean false
        colander.Boolean(false_choices=("false", "0"), true_choices=("true", "1")),
        missing=False,
        description="while the job runs, keep the answer open and send new bytes as they are written"
        " (chunked), until the job ends or hcc.jobs.output_follow_max_seconds pass",
    )

    def validator(self, node, value):
        if value.get("tail") is not None and value.get("offset") is not None:
            error = colander.Invalid(node)
            error["offset"] = "give either tail or offset, not both"
            raise error


class ListJobsSchema(StrictSchema):
    since = colander.SchemaNode(
        IsoDate(),
        missing=None,
        description=f"jobs since this day (YYYY-MM-DD); default: {DEFAULT_SINCE_DAYS} days ago",
    )
    state = colander.SchemaNode(
        StateList(), missing=None, description="only these states, comma-separated (RUNNING,PENDING)"
    )
    limit = colander.SchemaNode(
        colander.Int(),
        missing=None,
        validator=colander.Range(1, MAX_LIMIT),
        description=f"at most this many jobs, newest first (1 to {MAX_LIMIT})",
    )


def _absolute_path(node, value: str) -> None:
    if not value.startswith("/"):
        raise colander.Invalid(node, "must be an absolute path")
    if len(value) > MAX_PATH_LENGTH:
        raise colander.Invalid(node, f"must be at most {MAX_PATH_LENGTH} characters")
    # No NUL can reach argv, and a newline or escape in a path would forge lines in logs; such
    # paths exist but are not worth that: they are refused rather than passed on.
    if CONTROL.search(value):
        raise colander.Invalid(node, "must not contain control characters")


def _script_text(node, value: str) -> None:
    problem = script_problem(value)
    if problem is not None:
        raise colander.Invalid(node, problem)


def _job_name(node, value: str) -> None:
    if len(value) > MAX_NAME_LENGTH or CONTROL.search(value):
        raise colander.Invalid(node, f"must be 1 to {MAX_NAME_LENGTH} characters without control characters")


class SubmitJobSchema(StrictSchema):
    script_path = colander.SchemaNode(
        PathString(),
        missing=colander.drop,
        validator=_absolute_path,
        description="a script on the cluster; sbatch runs it in its own directory",
    )
    script = colander.SchemaNode(
        StrictString(),
        missing=colander.drop,
        validator=_script_text,
        description="the script's text (sent to sbatch on stdin); needs work_dir",
    )
    work_dir = colander.SchemaNode(
        PathString(),
        missing=colander.drop,
        validator=_absolute_path,
        description="where the inline script runs",
    )
    name = colander.SchemaNode(
        StrictString(), missing=colander.drop, validator=_job_name, description="the inline script's job name"
    )

    def validator(self, node, value):
        # Each way of submitting takes its own fields; anything else is refused, not ignored.
        error = colander.Invalid(node)
        if ("script_path" in value) == ("script" in value):
            error["script"] = "give either script_path or script, not both or neither"
        elif "script_path" in value:
            for field in ("work_dir", "name"):
                if field in value:
                    error[field] = (
                        "only with script (a script_path runs in its own directory, under its own name)"
                    )
        elif "work_dir" not in value:
            error["work_dir"] = "required with script"
        if error.children:
            raise error


# --------------------------------------------------------------------------------------------
# Response documents (for the OpenAPI document)
# --------------------------------------------------------------------------------------------

_STRING = {"type": ["string", "null"]}
_INT = {"type": ["integer", "null"]}
_TIME = nullable()
JOB_PROPERTIES = {
    "id": {"type": "string"},
    "name": {"type": "string"},
    "state": {"type": "string", "enum": sorted(JOB_STATES)},
    "reason": _STRING,
    "partition": _STRING,
    "account": _STRING,
    "user": _STRING,
    "submit_time": _TIME,
    "start_time": _TIME,
    "end_time": _TIME,
    "elapsed_seconds": {"type": "integer"},
    "time_limit_seconds": _INT,
    "node_count": _INT,
    "nodes": _STRING,
    "cpus": _INT,
    "memory": {**_INT, "description": "requested memory, MiB"},
    "work_dir": _STRING,
    "exit_code": {**_STRING, "description": "exit:signal, once finished"},
}
# The contract's job fields, in order: every job of a list has exactly these (detail adds steps,
# script and usage). The parsers build them; the OpenAPI check of the functional tests holds them to it.
JOB_FIELDS = tuple(JOB_PROPERTIES)
JOB = {
    "type": "object",
    "required": list(JOB_FIELDS),
    "additionalProperties": False,
    "properties": JOB_PROPERTIES,
}
CLUSTER_ERROR = {
    "type": "object",
    "properties": {
        "cluster": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "description": "what failed, as in the error envelope's entries"},
        "description": {"type": "string"},
    },
}
JOB_LIST_OUT = {
    "type": "object",
    "required": ["cluster", "jobs"],
    "properties": {
        "cluster": {"type": "string"},
        "jobs": {"type": "array", "items": JOB},
    },
}
FEDERATED_OUT = {
    "type": "object",
    "required": ["jobs", "errors"],
    "properties": {
        "jobs": {
            "type": "array",
            "items": {
                **JOB,
                "required": ["cluster", *JOB_FIELDS],
                "properties": {"cluster": {"type": "string"}, **JOB_PROPERTIES},
            },
        },
        "errors": {"type": "array", "items": CLUSTER_ERROR},
    },
}
PROCESS = {
    "type": "object",
    "properties": {
        "pid": {"type": "integer"},
        "cpu_percent": {"type": "number"},
        "rss_bytes": {"type": "integer"},
        "elapsed_seconds": {"type": ["number", "null"]},
        "command": {"type": "string"},
    },
}
USAGE = {
    "type": ["object", "null"],
    "description": "live usage of a RUNNING job",
    "properties": {
        "sampled_at": TIME,
        "nodes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "node": _STRING,
                    "scope": {"type": "string", "enum": ["job", "user"]},
                    "cpu_percent": {"type": "number"},
                    "rss_bytes": {"type": "integer"},
                    "processes": {"type": "array", "items": PROCESS},
                },
            },
        },
        "steps": {"type": "array", "items": {"type": "object"}},
    },
}
JOB_DETAIL_OUT = {
    "type": "object",
    "required": ["cluster", *JOB_FIELDS],
    "properties": {
        "cluster": {"type": "string"},
        **JOB_PROPERTIES,
        "steps": {"type": "array", "items": {"type": "object"}},
        "script": {**_STRING, "description": "the batch script, while slurmctld keeps it"},
        "usage": USAGE,
        "stdout": {
            **_STRING,
            "description": "the absolute path the job's standard output goes to, Slurm's %-patterns"
            " resolved; null when it cannot be known (output_reason says why)",
        },
        "stderr": {**_STRING, "description": "the same for standard error (stdout's path without --error)"},
        "output_reason": {**_STRING, "description": "why stdout and stderr are null, else null"},
    },
}
OUTPUT_CONTENT = {
    "text/plain": {"schema": {"type": "string", "description": "the file's bytes, as the job wrote them"}}
}
OUTPUT_HEADERS = {
    "X-Output-Size": {
        "description": "the file's size when it was looked at: the offset to ask for next",
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-Output-Offset": {
        "description": "where in the file the bytes of this answer start",
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-Job-State": {"description": "the job's state", "schema": {"type": "string"}},
    "X-Job-Running": {
        "description": "true while the job may still write (it has not finished)",
        "schema": {"type": "string", "enum": ["true", "false"]},
    },
}
SUBMITTED_OUT = {
    "type": "object",
    "required": ["cluster", "id"],
    "properties": {"cluster": {"type": "string"}, "id": {"type": "string"}},
}
