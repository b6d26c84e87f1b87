"""Parsers of hcc_federation.jobs on real Slurm 22.05 output (recorded by data/slurm/capture.py)."""

import json
import re
from pathlib import Path

import pytest

from hcc_federation.api.error_map import mapping_for
from hcc_federation.jobs.commands import SACCT_LIST_FIELDS, sacct_list_argv
from hcc_federation.jobs.errors import SlurmError, SlurmUnavailable
from hcc_federation.jobs.parsers import (
    command_error,
    merge_jobs,
    newest_first,
    parse_duration,
    parse_probe,
    parse_sacct,
    parse_sbatch,
    parse_squeue_json,
    parse_sstat,
    req_mem_mb,
    restore_recorded_names,
    size_to_bytes,
    size_to_mb,
    slurm_message,
    split_records,
    tres_memory_mb,
)
from hcc_federation.jobs.schemas import JOB_FIELDS
from hcc_federation.remote.result import CommandResult
from hcc_federation.timefmt import PATTERN

DATA = Path(__file__).parent / "data" / "slurm"
DELIMITER = "|#0123456789abcdef#|"  # what capture.py used


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def sacct_list():
    # recorded when the list asked for the fields of one job (ReqTRES): what sacct_job_argv asks
    return parse_sacct(read("sacct_list.txt"), DELIMITER)


def by_id(jobs):
    return {job["id"]: job for job in jobs}


def test_sacct_list_reads_every_allocation_with_hostile_names(sacct_list):
    jobs, steps = sacct_list
    names = {job["name"] for job in jobs}
    # Recorded names: a newline, a tab, \x1f, \x1e, BEL, "|" and a shell substitution all survive.
    assert {"nl\nx", "tab\tx", "us\x1fx", "rs\x1ex", "bell\x07x", "dollar$(id)"} <= names
    # slurmdbd stores double quotes as backticks: accounting cannot give the original back.
    assert "a|b `c` ü" in names
    assert all(set(job) == set(JOB_FIELDS) for job in jobs)
    assert steps == []  # --allocations


def test_sacct_job_fields(sacct_list):
    jobs = by_id(sacct_list[0])
    failed = jobs["8"]
    assert failed["state"] == "FAILED"
    assert failed["exit_code"] == "3:0"
    assert failed["user"] == "alice"
    assert failed["work_dir"].startswith("/home/alice/")
    assert re.fullmatch(PATTERN, failed["submit_time"])
    assert failed["time_limit_seconds"] == 60
    assert failed["memory"] == 1024  # the bed's default: 1G, given in MiB
    assert jobs["9"]["memory"] == 100
    assert jobs["16"]["exit_code"] == "0:9"  # killed by SIGKILL
    assert jobs["11+0"]["state"] == "CANCELLED"  # "CANCELLED by 10001" reduced to the state
    assert jobs["11+0"]["start_time"] is None and jobs["11+0"]["nodes"] is None
    assert jobs["13"]["state"] == "TIMEOUT"
    assert {"10_1", "10_2", "10_3"} <= set(jobs)
    running = [job for job in jobs.values() if job["state"] == "RUNNING"]
    assert running and all(job["exit_code"] is None and job["end_time"] is None for job in running)


def test_sacct_job_with_steps():
    jobs, steps = parse_sacct(read("sacct_job_running.txt"), DELIMITER)
    assert len(jobs) == 1
    job_id = jobs[0]["id"]
    assert {step["id"] for step in steps} >= {f"{job_id}.batch", f"{job_id}.0"}
    python = next(step for step in steps if step["id"] == f"{job_id}.0")
    assert python["name"] == "python3" and python["state"] == "RUNNING" and python["tasks"] == 1


def test_split_records_handles_newlines_in_last_and_middle_fields():
    d = "<D>"
    text = f"1{d}a\nb{d}x\n2{d}c{d}y\nz\n3{d}e{d}w\n"
    assert split_records(text, d, 3) == [["1", "a\nb", "x"], ["2", "c", "y\nz"], ["3", "e", "w"]]
    assert split_records("", d, 3) == []


@pytest.mark.parametrize("text", ["1<D>a\n", "1<D>a<D>b<D>c\n", "x<D>a<D>b\n"])
def test_split_records_refuses_what_it_cannot_read(text):
    with pytest.raises(SlurmError):
        split_records(text, "<D>", 3)


def test_squeue_json_filters_user_and_formats_ids():
    now = 1796002600
    everyone = parse_squeue_json(read("squeue.json"), now)
    alice = parse_squeue_json(read("squeue.json"), now, user="alice")
    assert alice and all(job["user"] == "alice" for job in alice)
    assert len(everyone) >= len(alice)
    jobs = by_id(alice)
    assert jobs["1"]["name"] == 'a|b "c" ü'  # the controller keeps the real name
    assert jobs["8"]["exit_code"] == "3:0"  # raw wait status 768
    assert jobs["16"]["exit_code"] == "0:9"
    assert jobs["15"]["reason"] == "JobHeldUser" and jobs["15"]["time_limit_seconds"] is None
    assert jobs["11+1"]["state"] == "CANCELLED"
    assert "10_2" in jobs
    running = [job for job in alice if job["state"] == "RUNNING"]
    assert running
    for job in running:
        assert job["elapsed_seconds"] > 0 and job["end_time"] is None and job["exit_code"] is None


def test_merge_prefers_the_queue_and_keeps_accounted_exit_codes(sacct_list):
    accounted = sacct_list[0]
    queued = parse_squeue_json(read("squeue.json"), 1796002600, user="alice")
    merged = by_id(merge_jobs(accounted, queued))
    assert merged["1"]["name"] == 'a|b "c" ü'
    assert merged["15"]["state"] == "PENDING"  # held: only squeue knows it
    assert merged["13"]["exit_code"] == "0:0"  # sacct's, not squeue's 0:15
    ordered = newest_first(merged.values())
    submits = [job["submit_time"] or "" for job in ordered]
    assert submits == sorted(submits, reverse=True)


def test_merge_lagging_accounting():
    accounted = [{**dict.fromkeys(JOB_FIELDS), "id": "5", "state": "PENDING", "reason": "Priority"}]
    accounted[0]["work_dir"] = "/w"
    queued = [{**dict.fromkeys(JOB_FIELDS), "id": "5", "state": "RUNNING"}]
    (job,) = merge_jobs(accounted, queued)
    assert job["state"] == "RUNNING" and job["reason"] is None and job["work_dir"] == "/w"


def test_sstat():
    steps = parse_sstat(read("sstat_running.txt"))
    python = next(step for step in steps if step["id"].endswith(".0"))
    assert python["max_rss_bytes"] > 50 * 1024 * 1024  # the job holds a 50 MB bytearray
    assert python["cpu_seconds"] > 0 and python["max_rss_node"] == "alpha-n1"


def test_probe_keeps_the_jobs_processes_only():
    (node,) = parse_probe(read("probe_running.txt"))
    assert node["node"] == "alpha-n1" and node["scope"] == "job"
    commands = [p["command"] for p in node["processes"]]
    assert commands[0] == "python3"
    # sshd, and the probe's own srun and ps, are not the job's.
    assert "sshd" not in commands and "ps" not in commands
    assert node["cpu_percent"] > 50 and node["rss_bytes"] > 50 * 1024 * 1024


def test_probe_without_listpids_falls_back_to_the_users_processes():
    text = "0: node n1\n0: step 3\n0: --pids--\n0: --ps--\n0:  42 12.5 2048 01:02:03 my prog\n"
    (node,) = parse_probe(text)
    assert node["scope"] == "user"
    assert node["processes"] == [
        {
            "pid": 42,
            "cpu_percent": 12.5,
            "rss_bytes": 2048 * 1024,
            "elapsed_seconds": 3723.0,
            "command": "my prog",
        }
    ]


def test_sbatch_output_and_errors():
    assert parse_sbatch(read("sbatch_ok.txt")).isdigit()
    assert parse_sbatch("123;alpha\n") == "123"
    with pytest.raises(SlurmError):
        parse_sbatch("")
    message = slurm_message(read("sbatch_bad_partition.stderr"))
    assert "Invalid partition name specified" in message and "sbatch: error:" not in message
    assert "no-such-option" in slurm_message(read("sbatch_bad_directive.stderr"))


def test_command_error_maps_a_down_controller_to_503():
    down = CommandResult(
        ("squeue",), 1, b"", b"squeue: error: Unable to contact slurm controller (connect failure)"
    )
    assert isinstance(command_error(down), SlurmUnavailable)
    assert mapping_for(command_error(down)).status == 503
    other = CommandResult(("env", "X=1", "sacct"), 1, b"", b"sacct: error: something odd")
    error = command_error(other)
    assert mapping_for(error).status == 502 and "sacct" in error.description


@pytest.mark.parametrize(
    ("text", "seconds"), [("00:00:04", 4), ("1-02:03:04", 93784), ("05:06", 306), ("00:01.500", 1.5)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_sizes():
    assert size_to_mb("1G") == 1024
    assert size_to_mb("100M") == 100
    assert size_to_bytes("3316K") == 3316 * 1024
    assert tres_memory_mb("billing=1,cpu=1,mem=2G,node=1") == 2048
    assert tres_memory_mb("cpu=1") is None


def test_the_list_asks_for_reqmem_not_reqtres():
    (fmt,) = (a for a in sacct_list_argv("alice", "2026-11-01", "|") if a.startswith("--format="))
    assert "ReqMem" in fmt.split("=", 1)[1].split(",") and "ReqTRES" not in fmt


def test_reqmem_gives_the_memory_that_reqtres_gave_for_the_same_jobs():
    # one capture of each field list, a moment apart, for jobs asking memory per CPU (100 x 2 CPUs),
    # for the job (300M, 1G over 2 CPUs) and not at all (the bed's default, 1G)
    cheap, _ = parse_sacct(read("sacct_list_reqmem.txt"), DELIMITER, SACCT_LIST_FIELDS)
    costly, _ = parse_sacct(read("sacct_list_reqtres.txt"), DELIMITER)
    assert [job["memory"] for job in cheap] == [200, 300, 1024, 1024]
    assert cheap == costly


def test_reqmem_of_older_slurm_per_cpu_and_per_node():
    assert req_mem_mb("200M", 2, 1) == 200
    assert req_mem_mb("100Mc", 2, 1) == 200
    assert req_mem_mb("1Gn", 8, 2) == 2048
    assert req_mem_mb("100Mc", None, 1) is None
    assert req_mem_mb("", 1, 1) is None


def test_squeue_fixture_is_real_22_05_output():
    meta = json.loads(read("squeue.json"))["meta"]
    assert meta["Slurm"]["release"].startswith("22.05")


def test_recorded_names_undo_what_accounting_did_to_quotes():
    jobs = [
        {"id": "1", "name": "a `b` ü"},  # accounting's version of a "b" ü
        {"id": "2", "name": "plain"},
        {"id": "3", "name": "x `y`"},  # an id reused by another job: the names differ otherwise
        {"id": "4", "name": "real `backticks`"},  # not submitted through the service
    ]
    restore_recorded_names(jobs, {"1": 'a "b" ü', "2": "plain", "3": 'other "y"'})
    assert [job["name"] for job in jobs] == ['a "b" ü', "plain", "x `y`", "real `backticks`"]
