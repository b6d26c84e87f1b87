"""Slurm's output filename patterns, resolved as slurmstepd 22.05 resolves them (pure).

The expected names are files that jobs on the test bed's Slurm (22.05.8) wrote, recorded with the
pattern they were submitted with.
"""

import pytest

from hcc_federation.jobs.output import (
    NO_VAL,
    OutputContext,
    RecordedOutput,
    Unresolvable,
    accounted_context,
    byte_window,
    expand_pattern,
    first_node,
    follow_argv,
    needs_node,
    parse_live_job,
    parse_node_hostname,
    parse_recorded_output,
    queued_context,
    queued_patterns,
    queued_problem,
    resolve_output,
)

WORK = "/home/alice/outtest"


def context(**kw) -> OutputContext:
    base = dict(
        job_id=1,
        array_job_id=None,
        array_task_id=None,
        job_name='my "job"',
        user="alice",
        work_dir=WORK,
        node_hostname="vm",
    )
    base.update(kw)
    return OutputContext(**base)


@pytest.mark.parametrize(
    ("pattern", "ctx", "expected"),
    [
        # recorded on the bed: sbatch -J 'my "job"' -o 'a b %x-%j %u %% %N %A %a.out' (job 1 on node vm)
        (
            f"{WORK}/a b %x-%j %u %% %N %A %a.out",
            context(),
            f'{WORK}/a b my "job"-1 alice % vm 1 {NO_VAL}.out',
        ),
        # an array's two tasks: ids 1004 (task 1) and 1003 (task 2) of array 1003; %q is no field
        (
            f"{WORK}/%J-%s-%n-%t-%5j-%q.out",
            context(job_id=1004, array_job_id=1003, array_task_id=1),
            f"{WORK}/1004-batch-0-0-01004-%q.out",
        ),
        (
            f"{WORK}/%J-%s-%n-%t-%5j-%q.out",
            context(job_id=1003, array_job_id=1003, array_task_id=2),
            f"{WORK}/1003-batch-0-0-01003-%q.out",
        ),
        # a backslash turns expansion off; "\\" is one backslash
        (f"{WORK}/rel\\\\%j.err", context(), f"{WORK}/rel\\%j.err"),
        (f"{WORK}/x\\%j", context(), f"{WORK}/x%j"),
        ("%A_%a", context(job_id=7, array_job_id=5, array_task_id=2), f"{WORK}/5_2"),
        ("%3a-%12j", context(job_id=7, array_job_id=5, array_task_id=2), f"{WORK}/002-0000000007"),
        ("out%", context(), f"{WORK}/out%"),
        ("out%%%j", context(), f"{WORK}/out%1"),
        ("%5q", context(), f"{WORK}/5q"),
        ("/abs/$(touch x);`id` '%u'", context(), "/abs/$(touch x);`id` 'alice'"),
    ],
)
def test_patterns_resolve_as_slurmstepd_writes_them(pattern, ctx, expected):
    assert expand_pattern(pattern, ctx) == expected


def test_defaults_stderr_and_the_unknown():
    # no --output: slurm-%j.out (slurm-1002.out on the bed); no --error: stderr goes with stdout
    paths = resolve_output(None, None, context(job_id=1002))
    assert (paths.stdout, paths.stderr, paths.reason) == (
        f"{WORK}/slurm-1002.out",
        f"{WORK}/slurm-1002.out",
        None,
    )
    paths = resolve_output(None, f"{WORK}/e-%j", context(job_id=9, array_job_id=8, array_task_id=3))
    assert (paths.stdout, paths.stderr) == (f"{WORK}/slurm-8_3.out", f"{WORK}/e-9")
    # %N before the job has a node: null, and why
    paths = resolve_output(f"{WORK}/%N.out", None, context(node_hostname=None))
    assert paths.stdout is None and paths.stderr is None and "%N" in paths.reason
    with pytest.raises(Unresolvable):
        expand_pattern("rel", context(work_dir=None))


def test_contexts_from_squeue_and_from_accounting():
    record = {
        "job_id": 1004,
        "array_job_id": 1003,
        "array_task_id": 1,
        "name": "n",
        "user_name": "alice",
        "current_working_directory": WORK,
        "standard_output": f"{WORK}/%A-%a.out",
        "standard_error": "",
    }
    assert queued_patterns(record) == RecordedOutput(f"{WORK}/%A-%a.out", None, "n", WORK)
    assert queued_context(record, "vm") == OutputContext(1004, 1003, 1, "n", "alice", WORK, "vm")
    plain = queued_context({**record, "array_job_id": 0, "array_task_id": None, "job_id": 5})
    assert (plain.job_id, plain.array_job_id, plain.array_task_id) == (5, None, None)
    recorded = RecordedOutput("", None, 'a "b"', "/w")
    # accounting alters " to `: the recorded name wins; a task's own id is not in the record
    gone = accounted_context(
        {"id": "12_3", "name": "a `b`", "user": "alice", "work_dir": "/x"}, recorded, None
    )
    assert gone == OutputContext(None, 12, 3, 'a "b"', "alice", "/w", None)
    assert resolve_output(None, None, gone).stdout == "/w/slurm-12_3.out"
    assert resolve_output("/w/%j", None, gone).stdout is None


D = "|#9f3a#|"


def test_what_the_registry_records_from_squeue():
    # recorded on the bed: sbatch --chdir=/tmp -o '/tmp/x %%j ' -J $'a b\nc: d,e' (no --error)
    text = f"/tmp/x %%j {D}/tmp/x %%j {D}a b\nc: d,e{D}/tmp{D}\n"
    assert parse_recorded_output(text, D, "1153") == RecordedOutput("/tmp/x %%j ", "", "a b\nc: d,e", "/tmp")
    # no --output: squeue prints /tmp/slurm-<id>.out for stdout and stderr, also for an array
    # (1154, sbatch -a 1-2), whose files are slurm-%A_%a.out: kept as sbatch's default
    text = f"/tmp/slurm-1154.out{D}/tmp/slurm-1154.out{D}sbatch{D}/tmp{D}\n"
    recorded = parse_recorded_output(text, D, "1154")
    assert recorded == RecordedOutput("", "", "sbatch", "/tmp")
    task = OutputContext(1155, 1154, 2, "sbatch", "alice", "/tmp")
    assert resolve_output(recorded.stdout_pattern or None, None, task).stdout == "/tmp/slurm-1154_2.out"
    # an array's running tasks: one line each, the first is enough
    line = f"/w/o-%a{D}/w/e-%a{D}n{D}/w{D}"
    assert parse_recorded_output(f"{line}\n{line}\n", D, "7") == RecordedOutput(
        "/w/o-%a", "/w/e-%a", "n", "/w"
    )
    assert parse_recorded_output("", D, "7") is None


def test_jobs_without_files_of_their_own():
    # batch_flag false: an srun or salloc job (checked on the bed: squeue --json says so)
    assert "interactive" in queued_problem({"batch_flag": False}, "5")
    assert "pending tasks" in queued_problem({"batch_flag": True}, "5_[1-3]")
    assert queued_problem({"batch_flag": True}, "5_1") is None


def test_node_helpers():
    assert needs_node("/x/%N") and needs_node(None, "/x/%3N") and needs_node("%%%N")
    assert not needs_node("/x/%%N") and not needs_node("/x\\%N") and not needs_node(None, None)
    assert first_node("n[01-04,7],m1") == "n01" and first_node("alpha-n1") == "alpha-n1"
    assert first_node(None) is None
    text = "NodeName=alpha-n1 Arch=x86_64 CoresPerSocket=1 NodeAddr=127.0.0.1 NodeHostName=vm Version=22.05.8"
    assert parse_node_hostname(text) == "vm"
    assert parse_node_hostname("NodeName=x") is None


def test_byte_windows():
    assert byte_window(100, None, None) == 0
    assert byte_window(100, 40, None) == 40
    assert byte_window(100, 400, None) == 100
    assert byte_window(100, None, 10) == 90
    assert byte_window(100, None, 1000) == 0


def test_the_follow_script_takes_its_arguments_literally():
    argv = follow_argv("12_3", "/w/a b'$(x)", 5, 0.5, 60)
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["sh", "12_3", "/w/a b'$(x)", "5", "0.5", "60"]
    assert "$(x)" not in argv[2]


def live(*fields: str) -> str:
    return "".join(f"{field}{D}" for field in fields) + "\n"


def test_a_live_job_from_one_filtered_squeue():
    # recorded on the bed: array 1187 (sbatch -a 1-2 -o /tmp/%A-%a.o), task 1 running as job 1188
    task = live(
        "1188",
        "1187",
        "1",
        "alice",
        "RUNNING",
        "1",
        "alpha-n1",
        "/tmp/%A-%a.o",
        "/tmp/%A-%a.o",
        "sbatch",
        "/tmp",
    )
    for asked in ("1188", "1187_1"):
        job = parse_live_job(task, D, asked)
        assert (job.user, job.state, job.node, job.problem) == ("alice", "RUNNING", "alpha-n1", None)
        assert job.patterns == RecordedOutput("/tmp/%A-%a.o", None, "sbatch", "/tmp")
        assert resolve_output(job.patterns.stdout_pattern, None, job.context).stdout == "/tmp/1187-1.o"
    # another id, an array's pending rest, two records, a het component: the long way
    assert parse_live_job(task, D, "1187_2") is None
    rest = live(
        "1187",
        "1187",
        "2-5",
        "alice",
        "PENDING",
        "1",
        "n/a",
        "/tmp/slurm-1187.out",
        "/tmp/slurm-1187.out",
        "s",
        "/tmp",
    )
    assert parse_live_job(rest, D, "1187") is None
    assert parse_live_job(task + task, D, "1188") is None
    assert parse_live_job(task, D, "1188+1") is None
    assert parse_live_job("", D, "1188") is None
    # a held plain job without --output: squeue fills in slurm-<id>.out, which is sbatch's default
    held = live(
        "1150",
        "1150",
        "N/A",
        "alice",
        "PENDING",
        "1",
        "n/a",
        "/tmp/slurm-1150.out",
        "/tmp/slurm-1150.out",
        "a\nb",
        "/tmp",
    )
    job = parse_live_job(held, D, "1150")
    assert job.patterns == RecordedOutput(None, None, "a\nb", "/tmp") and job.node is None
    assert resolve_output(None, None, job.context).stderr == "/tmp/slurm-1150.out"
    # an array task without --output: its file is slurm-%A_%a.out whatever squeue prints
    plain_task = live(
        "1152",
        "1151",
        "1",
        "alice",
        "RUNNING",
        "1",
        "n1",
        "/tmp/slurm-1152.out",
        "/tmp/slurm-1152.out",
        "s",
        "/tmp",
    )
    job = parse_live_job(plain_task, D, "1151_1")
    assert resolve_output(job.patterns.stdout_pattern, None, job.context).stdout == "/tmp/slurm-1151_1.out"
    srun = live("9", "9", "N/A", "alice", "RUNNING", "0", "n1", "", "", "bash", "/tmp")
    assert "interactive" in parse_live_job(srun, D, "9").problem
