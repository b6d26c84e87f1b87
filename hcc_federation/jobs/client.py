"""SlurmClient: Slurm for one cluster, its I/O through a runner that executes argv as the user."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from hcc_federation.fanout import FanOut
from hcc_federation.remote.result import CommandResult

from .commands import (
    SACCT_LIST_FIELDS,
    batch_script_argv,
    new_delimiter,
    probe_argv,
    sacct_job_argv,
    sacct_list_argv,
    sbatch_path_argv,
    sbatch_stdin_argv,
    scancel_argv,
    squeue_argv,
    sstat_argv,
)
from .errors import JobFinished, JobForbidden, JobNotFound, SlurmRefused, SlurmUnavailable
from .output import (
    OutputPaths,
    RecordedOutput,
    accounted_context,
    first_node,
    live_job_argv,
    needs_node,
    node_hostname_argv,
    parse_live_job,
    parse_node_hostname,
    parse_recorded_output,
    queued_context,
    queued_patterns,
    queued_problem,
    recorded_output_argv,
    resolve_output,
    unknown,
)
from .parsers import (
    UNAVAILABLE,
    Job,
    command_error,
    id_key,
    iso_time,
    merge_jobs,
    newest_first,
    parse_probe,
    parse_sacct,
    parse_sbatch,
    parse_squeue_json,
    parse_sstat,
    slurm_message,
    squeue_job_id,
    squeue_record_to_job,
    squeue_records,
)
from .validation import (
    FINISHED_STATES,
    validate_absolute_path,
    validate_job_id,
    validate_job_name,
    validate_limit,
    validate_script,
    validate_since,
    validate_states,
    validate_user,
)

# Runs argv as the user on the cluster's login node: (argv, stdin, timeout) -> result.
Runner = Callable[[Sequence[str], bytes | None, float | None], CommandResult]

_START_AFTER_NOW = re.compile(r"Start time \(.*\) requested is after end time")
# What the registry kept for a job at submit time, asked only once slurmctld has forgotten the job.
Recorded = Callable[[], RecordedOutput | None]


@dataclass(frozen=True)
class _Located:
    job: Job
    steps: list[Job]
    in_queue: bool
    # slurmctld's own record of the job (squeue --json), while it has one
    record: dict[str, Any] | None = None


class SlurmClient:
    """Slurm for one cluster, through a runner that executes argv as the user on a login node.

    Every call validates its arguments before anything runs and raises ``SlurmError``
    subclasses carrying their HTTP status; the runner's own errors (unreachable, timeout)
    pass through.
    """

    def __init__(
        self,
        run: Runner,
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] | None = None,
        fanout: FanOut | None = None,
    ):
        self._run_argv = run
        self._fanout = fanout
        self.timeout = timeout
        self._clock = clock or (lambda: datetime.now(UTC).timestamp())

    def _run(self, argv: Sequence[str], stdin: bytes | None = None) -> CommandResult:
        return self._run_argv(argv, stdin, self.timeout)

    def _checked(self, argv: Sequence[str]) -> CommandResult:
        result = self._run(argv)
        if not result.ok:
            raise command_error(result)
        return result

    def accounting_text(self, argv: Sequence[str]) -> str:
        """The output of a sacct argv; empty when its start day has not begun on the cluster yet."""
        return self._history(argv)

    def _history(self, argv: Sequence[str]) -> str:
        """sacct's records; none when the start day has not begun on the cluster yet.

        sacct 22.05 refuses a start after its own clock ("Start time (...) requested is after end
        time (...)", exit 1), which was a 502: no job can have started then, so nothing matches.
        """
        result = self._run(argv)
        if not result.ok and _START_AFTER_NOW.search(result.error_text()):
            return ""
        if not result.ok:
            raise command_error(result)
        return result.text()

    # -- reading ---------------------------------------------------------------------------

    def list_jobs(
        self,
        user: str,
        since: date | str | None = None,
        states: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """The user's jobs since a day (default: 7 days ago), newest first."""
        user = validate_user(user)
        since_text = validate_since(since)
        wanted = validate_states(states)
        limit = validate_limit(limit)
        delimiter = new_delimiter()
        # the history and the live queue are independent reads: with a fan-out, squeue runs beside
        # sacct (two channels on the user's connection), so a list costs the slower of the two
        # rather than their sum
        queue_argv = squeue_argv(user)
        queue = self._fanout.submit(self._checked, queue_argv) if self._fanout is not None else None
        try:
            history = self._history(sacct_list_argv(user, since_text, delimiter, wanted))
        except BaseException:
            if queue is not None:
                # its channel is given back before this request ends, as the request's own are
                futures.wait([queue])
            raise
        accounted, _ = parse_sacct(history, delimiter, SACCT_LIST_FIELDS)
        queue_result = queue.result() if queue is not None else self._checked(queue_argv)
        queued = parse_squeue_json(queue_result.text(), self._clock(), user=user)
        jobs = merge_jobs(accounted, queued)
        if wanted is not None:
            jobs = [job for job in jobs if job["state"] in wanted]
        jobs = newest_first(jobs)
        return jobs[:limit] if limit else jobs

    def _locate(self, user: str, job_id: str) -> _Located:
        """One job from queue and accounting: JobNotFound if neither knows it, JobForbidden if not ours."""
        delimiter = new_delimiter()
        accounted, steps = parse_sacct(self._checked(sacct_job_argv(job_id, delimiter)).text(), delimiter)
        records = squeue_records(self._checked(squeue_argv()).text())
        now = self._clock()
        queued = [squeue_record_to_job(record, now) for record in records]
        candidates = merge_jobs(accounted, queued)
        job = _pick(job_id, candidates)
        if job is None:
            raise JobNotFound(f"no job {job_id} on this cluster", job_id=job_id)
        if job.get("user") != user:
            # Checked before anything else is read or done: another user's job says nothing more.
            raise JobForbidden(f"job {job_id} belongs to another user", job_id=job_id)
        own_steps = [s for s in steps if s["id"].split(".", 1)[0] == job["id"]]
        record = next((r for r in records if squeue_job_id(r) == job["id"]), None)
        return _Located(job=job, steps=own_steps, in_queue=record is not None, record=record)

    def locate_job(self, user: str, job_id: str) -> Job:
        """One of the user's jobs as queue and accounting know it (no steps, script or usage):
        JobNotFound if neither knows it, JobForbidden if it is another user's."""
        return dict(self._locate(validate_user(user), validate_job_id(job_id)).job)

    def locate_job_output(
        self, user: str, job_id: str, recorded: Recorded | None = None
    ) -> tuple[Job, OutputPaths]:
        """``locate_job`` and where the job's stdout and stderr go (paths, or None with the reason),
        as ``get_job`` finds them (``recorded``: what the registry kept at submit time)."""
        located = self._locate(validate_user(user), validate_job_id(job_id))
        return dict(located.job), self._output_paths(located, recorded)

    def get_job(
        self, user: str, job_id: str, with_usage: bool = True, recorded: Recorded | None = None
    ) -> Job:
        """One job with ``steps``, ``script`` (while slurmctld has it), ``stdout``/``stderr`` (paths,
        or null with ``output_reason``) and, if running, ``usage``.

        ``recorded`` gives what the registry kept at submit time, for a job slurmctld forgot.
        """
        job_id = validate_job_id(job_id)
        user = validate_user(user)
        located = self._locate(user, job_id)
        job = dict(located.job)
        job["steps"] = located.steps
        job["script"] = self._batch_script(job["id"]) if located.in_queue else None
        paths = self._output_paths(located, recorded)
        job.update(stdout=paths.stdout, stderr=paths.stderr, output_reason=paths.reason)
        job["usage"] = self._usage(job) if with_usage and job["state"] == "RUNNING" else None
        return job

    def job_output(self, user: str, job_id: str, recorded: Recorded | None = None) -> tuple[Job, OutputPaths]:
        """One of the user's jobs (JobNotFound, JobForbidden) and where its stdout and stderr go.

        Returns ``{"id", "state"}`` at least. A job slurmctld has is read with one filtered squeue
        (a portal polls this); any other the long way, as the detail does.
        """
        job_id = validate_job_id(job_id)
        user = validate_user(user)
        delimiter = new_delimiter()
        result = self._run(live_job_argv(job_id, delimiter))
        live = parse_live_job(result.text(), delimiter, job_id) if result.ok else None
        if live is None:
            located = self._locate(user, job_id)
            return dict(located.job), self._output_paths(located, recorded)
        if live.user != user:
            # checked before anything else is read or done, as _locate does
            raise JobForbidden(f"job {job_id} belongs to another user", job_id=job_id)
        job = {"id": job_id, "state": live.state}
        if live.problem is not None:
            return job, unknown(live.problem)
        patterns = live.patterns
        context = live.context
        if needs_node(patterns.stdout_pattern, patterns.stderr_pattern) and live.node:
            context = dataclasses.replace(context, node_hostname=self._node_hostname(live.node))
        return job, resolve_output(patterns.stdout_pattern, patterns.stderr_pattern, context)

    def recorded_output(self, job_id: str) -> RecordedOutput | None:
        """What slurmctld holds about a job's output files just after sbatch, for the registry."""
        job_id = validate_job_id(job_id)
        delimiter = new_delimiter()
        result = self._checked(recorded_output_argv(job_id, delimiter))
        return parse_recorded_output(result.text(), delimiter, job_id)

    def _output_paths(self, located: _Located, recorded: Recorded | None) -> OutputPaths:
        job = located.job
        record = located.record
        if record is not None:
            problem = queued_problem(record, job["id"])
            if problem is not None:
                return unknown(problem)
            patterns = queued_patterns(record)
            node = record.get("batch_host") or None
        else:
            patterns = recorded() if recorded is not None else None
            if patterns is None:
                return unknown("slurmctld forgot this job, which was not submitted through this service")
            node = first_node(job.get("nodes"))
        hostname = None
        if needs_node(patterns.stdout_pattern, patterns.stderr_pattern) and node:
            # one more command, only for a pattern that names the node
            hostname = self._node_hostname(node)
        if record is not None:
            context = queued_context(record, hostname)
        else:
            context = accounted_context(job, patterns, hostname)
        return resolve_output(patterns.stdout_pattern, patterns.stderr_pattern, context)

    def _node_hostname(self, node: str) -> str | None:
        # %N is the host name slurmd runs on (NodeHostName), which may differ from the node's name
        result = self._run(node_hostname_argv(node))
        return parse_node_hostname(result.text()) if result.ok else None

    def _batch_script(self, job_id: str) -> str | None:
        if "[" in job_id:
            return None
        result = self._run(batch_script_argv(job_id))
        # scontrol exits 0 even when it could not fetch the script: stdout is the only signal.
        if not result.ok or not result.stdout:
            return None
        return result.text()

    def _usage(self, job: Job) -> Job:
        sstat = self._run(sstat_argv(job["id"]))
        # A job that ends between our calls has "No steps running": an empty sample, not an error.
        if not sstat.ok and "No steps running" not in sstat.error_text():
            raise command_error(sstat)
        steps = parse_sstat(sstat.text()) if sstat.ok else []
        nodes: list[Job] = []
        if job.get("nodes") and job.get("node_count"):
            probe = self._run(probe_argv(job["id"], job["nodes"], job["node_count"]))
            # A job that ends between the two calls refuses new steps: report what sstat had.
            if probe.ok:
                nodes = parse_probe(probe.text())
        return {"sampled_at": iso_time(int(self._clock())), "nodes": nodes, "steps": steps}

    # -- writing ---------------------------------------------------------------------------

    def submit_script_path(self, user: str, path: str) -> str:
        """Submit a script already on the cluster; it runs in its own directory. Returns the job id."""
        validate_user(user)
        path = validate_absolute_path(path, name="script_path")
        return self._submit(sbatch_path_argv(path), None)

    def submit_script(self, user: str, script: str, work_dir: str, name: str | None = None) -> str:
        """Submit script text (sent on stdin) to run in ``work_dir``. Returns the job id."""
        validate_user(user)
        work_dir = validate_absolute_path(work_dir, name="work_dir")
        if name is not None:
            name = validate_job_name(name)
        return self._submit(sbatch_stdin_argv(work_dir, name), validate_script(script))

    def _submit(self, argv: list[str], stdin: bytes | None) -> str:
        # Never retried: a second sbatch would be a second job.
        result = self._run(argv, stdin)
        if not result.ok:
            message = slurm_message(result.error_text() or result.text())
            if UNAVAILABLE.search(message):
                raise SlurmUnavailable(f"Slurm is not answering (sbatch): {message}")
            raise SlurmRefused(message)
        return parse_sbatch(result.text())

    def cancel_job(self, user: str, job_id: str) -> None:
        """Cancel one of the user's jobs: JobNotFound, JobForbidden (someone else's) or JobFinished."""
        job_id = validate_job_id(job_id)
        user = validate_user(user)
        job = self._locate(user, job_id).job
        if job["state"] in FINISHED_STATES:
            raise JobFinished(f"job {job_id} already finished ({job['state']})", job_id=job_id)
        result = self._run(scancel_argv(job_id))
        message = result.error_text()
        # scancel may say why on stderr and still exit 0, so read both.
        if "already completing or completed" in message:
            raise JobFinished(f"job {job_id} already finished", job_id=job_id)
        if "Invalid job id" in message:
            raise JobNotFound(f"no job {job_id} on this cluster", job_id=job_id)
        if "Access/permission denied" in message:
            raise JobForbidden(f"job {job_id} belongs to another user", job_id=job_id)
        if not result.ok:
            raise command_error(result)


def _pick(job_id: str, jobs: Sequence[Job]) -> Job | None:
    """The record for ``job_id``; for an array's or het job's own id, its first task or component."""
    for job in jobs:
        if job["id"] == job_id:
            return job
    related = [job for job in jobs if re.match(rf"{re.escape(job_id)}[_+]", job["id"])]
    return min(related, key=lambda job: id_key(job["id"])) if related else None
