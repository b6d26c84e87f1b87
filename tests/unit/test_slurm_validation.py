"""Arguments of hcc_federation.jobs are checked before anything reaches argv."""

from datetime import date

import pytest

from hcc_federation.api.error_map import mapping_for
from hcc_federation.errors import InvalidArgument
from hcc_federation.jobs.client import SlurmClient
from hcc_federation.jobs.commands import (
    new_delimiter,
    probe_argv,
    sacct_list_argv,
    sbatch_path_argv,
    sbatch_stdin_argv,
    sstat_argv,
)
from hcc_federation.jobs.errors import (
    JobFinished,
    JobForbidden,
    JobNotFound,
    SlurmError,
    SlurmRefused,
    SlurmUnavailable,
)
from hcc_federation.jobs.validation import (
    MAX_LIMIT,
    validate_absolute_path,
    validate_job_id,
    validate_job_name,
    validate_limit,
    validate_since,
    validate_states,
)
from hcc_federation.remote.result import CommandResult

HOSTILE_IDS = [
    "1;id",
    "$(id)",
    "../",
    "1\n2",
    "",
    "12 ",
    "-1",
    "1_",
    "1+",
    "1.batch",
    "١٢",
    "1_2+3",
    "x" * 5,
    None,
    12,
]


@pytest.mark.parametrize("job_id", ["1", "123", "123_4", "123+1", "4294967294"])
def test_valid_job_ids(job_id):
    assert validate_job_id(job_id) == job_id


@pytest.mark.parametrize("job_id", HOSTILE_IDS)
def test_hostile_job_ids_are_a_400_on_the_path(job_id):
    with pytest.raises(InvalidArgument) as caught:
        validate_job_id(job_id)
    assert mapping_for(caught.value).status == 400
    assert caught.value.field == "job_id"


class RecordingRunner:
    """Not a Slurm stand-in: it only proves that nothing was run."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv, stdin, timeout):
        self.calls.append(list(argv))
        return CommandResult(tuple(argv), 1, b"", b"must not run")


@pytest.mark.parametrize("job_id", HOSTILE_IDS)
def test_client_runs_nothing_for_a_hostile_id(job_id):
    runner = RecordingRunner()
    client = SlurmClient(runner)
    with pytest.raises(InvalidArgument):
        client.get_job("alice", job_id)
    with pytest.raises(InvalidArgument):
        client.cancel_job("alice", job_id)
    assert runner.calls == []


def test_since():
    assert validate_since("2026-01-31") == "2026-01-31"
    assert validate_since(date(2026, 2, 1)) == "2026-02-01"
    assert validate_since(None, today=date(2026, 11, 30)) == "2026-11-23"
    for bad in ["2026-02-30", "2026-1-1", "now-7days", "2026-01-01;id", "2026-01-01\n"]:
        with pytest.raises(InvalidArgument) as caught:
            validate_since(bad)
        assert caught.value.field == "since"


def test_states():
    assert validate_states(["running", " PENDING "]) == {"RUNNING", "PENDING"}
    assert validate_states(None) is None
    for bad in [["RUN"], ["R"], ["RUNNING;id"]]:
        with pytest.raises(InvalidArgument) as caught:
            validate_states(bad)
        assert caught.value.field == "states"


def test_limit_and_paths_and_names():
    assert validate_limit(5) == 5
    for bad in [0, -1, True, "5", MAX_LIMIT + 1]:
        with pytest.raises(InvalidArgument):
            validate_limit(bad)
    assert validate_absolute_path("/home/a b/x.sh", name="script_path") == "/home/a b/x.sh"
    for bad in ["x.sh", "", "/a\x00b", None]:
        with pytest.raises(InvalidArgument):
            validate_absolute_path(bad, name="script_path")
    assert validate_job_name('a|b "c" ü') == 'a|b "c" ü'
    for bad in ["", "a\nb", "x" * 201]:
        with pytest.raises(InvalidArgument):
            validate_job_name(bad)


def test_argv_builders():
    assert sbatch_path_argv("/home/alice/run dir/job.sh") == [
        "sbatch",
        "--parsable",
        "--chdir=/home/alice/run dir",
        "/home/alice/run dir/job.sh",
    ]
    assert sbatch_stdin_argv("/w", 'a "b"') == [
        "sbatch",
        "--parsable",
        "--chdir=/w",
        '--job-name=a "b"',
    ]
    argv = sacct_list_argv("alice", "2026-11-01", "|#x#|", frozenset({"RUNNING"}))
    assert argv[:3] == ["env", "SLURM_TIME_FORMAT=%s", "sacct"]
    assert {
        "--allocations",
        "--user=alice",
        "--starttime=2026-11-01",
        "--delimiter=|#x#|",
        "--state=RUNNING",
        # without it sacct 22.05 returns no finished job for a state filter
        "--endtime=now",
    } <= set(argv)
    # COMPLETING is no sacct state: filter on our side only.
    assert not any(a.startswith("--state") for a in sacct_list_argv("a", "2026-11-01", "|", {"COMPLETING"}))
    assert sstat_argv("7")[:2] == ["sstat", "--allsteps"]
    with pytest.raises(SlurmError):
        probe_argv("7", "n1;id", 1)


def test_delimiters_are_fresh_and_printable():
    first, second = new_delimiter(), new_delimiter()
    assert first != second and first.isprintable()


def test_error_statuses():
    assert mapping_for(JobNotFound("x")).status == 404
    assert mapping_for(JobForbidden("x")).status == 403
    assert mapping_for(JobFinished("x")).status == 409
    assert mapping_for(SlurmRefused("x")).status == 400
    assert mapping_for(SlurmError("x")).status == 502
    assert mapping_for(SlurmUnavailable("x")).status == 503


def test_the_api_and_the_client_cap_a_script_at_the_same_size():
    # one limit: the API said 1 MiB and the client 4 MiB, so a direct caller could send 4 MiB
    import colander

    from hcc_federation.jobs.schemas import SubmitJobSchema
    from hcc_federation.remote.result import CommandResult

    sent = []

    def run(argv, stdin=None, timeout=None):
        sent.append(stdin)
        return CommandResult(tuple(argv), 0, b"42\n", b"")

    client = SlurmClient(run)
    limit = 1024 * 1024  # the limit the API has always applied to a script
    fits = "#!/bin/sh\n" + "x" * (limit - 10)
    over = fits + "x"
    assert client.submit_script("alice", fits, "/home/alice") == "42"
    with pytest.raises(InvalidArgument):
        client.submit_script("alice", over, "/home/alice")
    assert sent == [fits.encode()]
    schema = SubmitJobSchema()
    assert schema.deserialize({"script": fits, "work_dir": "/home/alice"})["script"] == fits
    with pytest.raises(colander.Invalid):
        schema.deserialize({"script": over, "work_dir": "/home/alice"})
