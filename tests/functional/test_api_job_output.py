"""A job's output on the test bed's real Slurm: its paths in the detail, its bytes, and following it live."""

import http.client
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from hcc_federation.clusters import ClusterAccess
from hcc_federation.clusters.registry import identity_for
from hcc_federation.jobs.client import SlurmClient
from hcc_federation.jobs.output import RecordedOutput
from hcc_federation.models import JobSubmission
from hcc_federation.remote.result import CommandResult
from tests.functional.test_api_jobs import HELD, skip_on_mysql
from tests.helpers import alice_work_dir, jobs_cancelled_afterwards, migrate, wait_for
from tests.liveserver import live_server

CLUSTERS = ["alpha", "beta"]
# Ten lines over about ten seconds on stdout, one per line on stderr, into files of its own naming.
PRINTER = (
    "#!/bin/sh\n"
    "#SBATCH --time=1\n"
    "#SBATCH --mem=10M\n"
    "#SBATCH --output=%x-%j.out\n"
    "#SBATCH --error=err-%j.txt\n"
    'for i in 1 2 3 4 5 6 7 8 9 10; do echo "line $i"; echo "e$i" >&2; sleep 1; done\n'
)
QUICK = "#!/bin/sh\n#SBATCH --time=1\n#SBATCH --mem=10M\necho done\n"


@pytest.fixture
def work_dir(users):
    with alice_work_dir(users, "hcc-job-output") as path:
        yield path


@pytest.fixture
def started(clusters):
    with jobs_cancelled_afterwards(clusters) as jobs:
        yield jobs


def submit(app, started, cluster, headers, body) -> str:
    job_id = app.post_json(f"/api/v1/clusters/{cluster}/jobs", body, headers=headers, status=201).json["id"]
    started.append((cluster, job_id))
    return job_id


def detail(app, cluster, job_id, headers) -> dict:
    return app.get(f"/api/v1/clusters/{cluster}/jobs/{job_id}", headers=headers).json


def output_url(cluster, job_id, **query) -> str:
    tail = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/api/v1/clusters/{cluster}/jobs/{job_id}/output" + (f"?{tail}" if tail else "")


def follow(server, token, url) -> tuple[http.client.HTTPResponse, list[tuple[float, bytes]], float]:
    """GET url and read its body as it comes: (response, [(seconds since the request, piece)], seconds
    until the answer ended)."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
    started = time.monotonic()
    connection.request("GET", url, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    pieces = []
    while True:
        piece = response.read1(65536)
        if not piece:
            break
        pieces.append((time.monotonic() - started, piece))
    ended = time.monotonic() - started
    connection.close()
    return response, pieces, ended


@pytest.mark.slow
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_a_printing_job_its_paths_its_bytes_and_following_it(
    settings, app, login, users, database_url, work_dir, started, cluster
):
    skip_on_mysql(database_url)
    alice, bob = login("alice"), login("bob")
    # spaces and quotes in the name reach --output through %x and stay literal
    name = f"out \"q\" 'x' $(id) {uuid.uuid4().hex[:6]}"
    job_id = submit(
        app, started, cluster, alice, {"script": PRINTER, "work_dir": str(work_dir), "name": name}
    )
    job = detail(app, cluster, job_id, alice)
    assert job["stdout"] == f"{work_dir}/{name}-{job_id}.out"
    assert job["stderr"] == f"{work_dir}/err-{job_id}.txt"
    assert job["output_reason"] is None

    def first_line():
        r = app.get(output_url(cluster, job_id), headers=alice, expect_errors=True)
        return r if r.status_int == 200 and r.body.startswith(b"line 1\n") else None

    # the file appears once the job starts
    first = wait_for(first_line, timeout=60, interval=0.5)
    assert first.headers["X-Job-Running"] == "true" and first.headers["Content-Type"] == "text/plain"
    size = int(first.headers["X-Output-Size"])
    assert first.headers["X-Output-Offset"] == "0" and len(first.body) == size
    # bob cannot read it: the job is alice's
    app.get(output_url(cluster, job_id), headers=bob, status=403)

    token = alice["Authorization"].split()[1]
    with live_server(settings, threads=4) as server:
        response, pieces, _ = follow(server, token, output_url(cluster, job_id, offset=size, follow="true"))
    assert response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("X-Output-Offset") == str(size)
    followed = b"".join(piece for _, piece in pieces)
    # only what is new after the offset, up to the job's last line, received while it was written
    assert followed.startswith(b"line ") and not followed.startswith(first.body)
    assert first.body + followed == b"".join(b"line %d\n" % i for i in range(1, 11))
    assert len(pieces) >= 3 and pieces[-1][0] - pieces[0][0] > 3

    done = app.get(output_url(cluster, job_id), headers=alice)
    assert done.headers["X-Job-Running"] == "false"
    assert done.body == first.body + followed
    # from an offset: only the bytes after it; the tail: the last ones
    middle = app.get(output_url(cluster, job_id, offset=size), headers=alice)
    assert middle.body == followed and middle.headers["X-Output-Offset"] == str(size)
    assert app.get(output_url(cluster, job_id, tail=8), headers=alice).body == b"line 10\n"
    assert app.get(output_url(cluster, job_id, offset=10**6), headers=alice).body == b""
    errors = app.get(output_url(cluster, job_id, stream="stderr"), headers=alice)
    assert errors.body == b"".join(b"e%d\n" % i for i in range(1, 11))


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_default_paths_a_file_not_there_yet_and_another_users_job(app, login, work_dir, started, cluster):
    alice, bob = login("alice"), login("bob")
    # held: it never starts, so its default file slurm-<id>.out does not exist
    job_id = submit(app, started, cluster, alice, {"script": HELD, "work_dir": str(work_dir)})
    job = detail(app, cluster, job_id, alice)
    expected = f"{work_dir}/slurm-{job_id}.out"
    assert (job["stdout"], job["stderr"], job["output_reason"]) == (expected, expected, None)
    r = app.get(output_url(cluster, job_id), headers=alice, status=404)
    [error] = r.json["errors"]
    assert error["code"] == "output_not_found" and expected in error["description"]
    app.get(output_url(cluster, job_id, stream="stderr"), headers=bob, status=403)
    app.get(f"/api/v1/clusters/{cluster}/jobs/{job_id}", headers=bob, status=403)
    app.get(output_url(cluster, "999999999"), headers=alice, status=404)


@pytest.mark.parametrize(
    "query",
    ["stream=stdin", "tail=-1", "offset=x", "tail=1&offset=2", "follow=ture", "bogus=1", "offset=1&offset=2"],
)
def test_bad_output_queries_are_400(app, login, query):
    app.get(f"/api/v1/clusters/alpha/jobs/1/output?{query}", headers=login("alice"), status=400)


def test_paths_of_a_job_slurmctld_forgot_come_from_the_registry(app, login, users, work_dir, started):
    """sacct 22.05 has no StdOut: once slurmctld forgets a job (MinJobAge, 300 s on the bed), the
    patterns the registry kept at submit time give the paths. Waiting 5 minutes is too long for a
    test, so slurmctld's forgetting is shown by hiding the job from squeue's real answer."""
    alice = login("alice")
    script = work_dir / "quick job.sh"
    script.write_text(QUICK.replace("echo done", "#SBATCH -o %x.%A.log\necho done"))
    os.chown(script, users["alice"]["uid"], -1)
    job_id = submit(app, started, "alpha", alice, {"script_path": str(script)})
    with Session(app.app.registry.hcc_engine) as db:
        row = db.scalars(
            select(JobSubmission).where(JobSubmission.cluster == "alpha", JobSubmission.job_id == job_id)
        ).one()
    assert (row.stdout_pattern, row.stderr_pattern, row.job_name) == (
        f"{work_dir}/%x.%A.log",
        "",
        "quick job.sh",
    )
    expected = f"{work_dir}/quick job.sh.{job_id}.log"
    assert detail(app, "alpha", job_id, alice)["stdout"] == expected
    wait_for(lambda: detail(app, "alpha", job_id, alice)["state"] == "COMPLETED", timeout=60)
    wait_for(lambda: detail(app, "alpha", job_id, alice)["steps"], timeout=60)

    registry = app.app.registry
    access_settings = registry.hcc_clusters.get("alpha")
    identity = identity_for(access_settings, "alice", {"password": users["alice"]["password"]})
    access = ClusterAccess(registry.hcc_pool, access_settings, identity)

    def forgetting(argv, stdin=None, timeout=None):
        if argv[0] == "squeue" and f"--jobs={job_id}" in argv and "--json" not in argv:
            # what squeue says of a job slurmctld forgot
            return CommandResult(tuple(argv), 1, b"", b"slurm_load_jobs error: Invalid job id specified\n")
        result = access.run(argv, stdin=stdin, timeout=timeout)
        if argv[0] == "squeue":
            document = json.loads(result.stdout)
            document["jobs"] = [j for j in document["jobs"] if str(j["job_id"]) != job_id]
            result = type(result)(
                result.argv, result.exit_status, json.dumps(document).encode(), result.stderr
            )
        return result

    client = SlurmClient(forgetting)
    recorded = RecordedOutput(
        row.stdout_pattern or None, row.stderr_pattern or None, row.job_name, row.work_dir
    )
    job = client.get_job("alice", job_id, with_usage=False, recorded=lambda: recorded)
    assert job["script"] is None  # slurmctld's side is gone, as for a forgotten job
    assert (job["stdout"], job["stderr"], job["output_reason"]) == (expected, expected, None)
    assert Path(expected).read_text() == "done\n"
    # the output route's way: its one filtered squeue finds nothing, so it looks the long way
    job, paths = client.job_output("alice", job_id, recorded=lambda: recorded)
    assert (job["state"], paths.stdout, paths.stderr) == ("COMPLETED", expected, expected)
    job = client.get_job("alice", job_id, with_usage=False, recorded=lambda: None)
    assert job["stdout"] is None and "not submitted through this service" in job["output_reason"]


# Prints a numbered line every 0.2 s for about 40 s.
CHATTY = (
    "#!/bin/sh\n"
    "#SBATCH --time=1\n"
    "#SBATCH --mem=10M\n"
    'i=0; while [ $i -lt 200 ]; do i=$((i + 1)); echo "tick $i"; sleep 0.2; done\n'
)


def test_follow_polls_once_per_interval_and_stops_at_the_maximum(
    base_settings, tmp_path, users, work_dir, started, app, login, database_url
):
    """hcc.jobs.output_poll_interval and .output_follow_max_seconds act: with 2 s and 5 s, a job
    that prints five lines a second arrives in pieces about 2 s apart, and the answer ends after
    about 5 s while the job still runs."""
    skip_on_mysql(database_url)
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    migrate(url)
    settings = {
        **base_settings,
        "hcc.database.url": url,
        "hcc.jobs.output_poll_interval": "2",
        "hcc.jobs.output_follow_max_seconds": "5",
    }
    alice = login("alice")
    job_id = submit(app, started, "alpha", alice, {"script": CHATTY, "work_dir": str(work_dir)})
    wait_for(
        lambda: app.get(output_url("alpha", job_id), headers=alice, expect_errors=True).status_int == 200,
        timeout=60,
    )
    with live_server(settings, threads=4) as server:
        token = server.login("alice", users["alice"]["password"])
        response, pieces, ended = follow(server, token, output_url("alpha", job_id, follow="true"))
    assert response.status == 200 and response.getheader("X-Job-Running") == "true"
    seconds = [at for at, _ in pieces]
    # ended by the maximum (5 s, plus the last look), not by the job, which runs for 40 s; the last
    # piece may come from the look at 4 s, so the end of the answer is what is timed
    assert 4.5 < ended < 12
    assert detail(app, "alpha", job_id, alice)["state"] == "RUNNING"
    # the cluster was looked at every 2 s: a handful of pieces, never a stream of 0.2 s lines
    assert 2 <= len(pieces) <= 6
    gaps = [b - a for a, b in zip(seconds, seconds[1:], strict=False)]
    assert all(gap > 1.5 for gap in gaps), gaps
    lines = b"".join(piece for _, piece in pieces).decode().splitlines()
    assert lines == [f"tick {i}" for i in range(1, len(lines) + 1)] and len(lines) > 15


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_an_output_name_with_spaces_and_quotes_stays_literal(app, login, users, work_dir, started, cluster):
    alice = login("alice")
    script = work_dir / "literal.sh"
    # sbatch takes the double quotes as grouping: the file is named  it's a $(x) `y` <id>.out
    script.write_text(QUICK.replace("echo done", '#SBATCH --output="it\'s a $(x) `y` %j.out"\necho done'))
    os.chown(script, users["alice"]["uid"], -1)
    job_id = submit(app, started, cluster, alice, {"script_path": str(script)})
    expected = f"{work_dir}/it's a $(x) `y` {job_id}.out"
    assert detail(app, cluster, job_id, alice)["stdout"] == expected

    def printed():
        r = app.get(output_url(cluster, job_id), headers=alice, expect_errors=True)
        return r.status_int == 200 and r.body == b"done\n"

    wait_for(printed, timeout=60)
    assert Path(expected).read_text() == "done\n"
    assert not (work_dir / "x").exists() and not (work_dir / "y").exists()


def remote_followers(marker: str) -> list[str]:
    """The cluster-side follow loops whose arguments hold ``marker`` (the clusters run on this host)."""
    # -ww: whole command lines (the path comes after the script)
    ps = subprocess.run(
        ["ps", "-ww", "-u", "alice", "-o", "args="], capture_output=True, text=True, check=True
    )
    return [line for line in ps.stdout.splitlines() if marker in line]


def test_a_client_that_goes_away_stops_the_follow_on_the_cluster(
    settings, app, login, users, work_dir, started, database_url
):
    skip_on_mysql(database_url)
    alice = login("alice")
    job_id = submit(app, started, "alpha", alice, {"script": CHATTY, "work_dir": str(work_dir)})
    wait_for(
        lambda: app.get(output_url("alpha", job_id), headers=alice, expect_errors=True).status_int == 200,
        timeout=60,
    )
    with live_server(settings, threads=4) as server:
        token = server.login("alice", users["alice"]["password"])
        connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
        connection.request(
            "GET", output_url("alpha", job_id, follow="true"), headers={"Authorization": f"Bearer {token}"}
        )
        response = connection.getresponse()
        assert response.status == 200 and response.read1(65536).startswith(b"tick 1\n")
        assert remote_followers(str(work_dir)), "the follow loop should run on the cluster"
        # both: the response's file object keeps the socket open on its own
        response.close()
        connection.close()
        # the next piece fails to reach the client: the body is closed, and with it the channel
        wait_for(lambda: not remote_followers(str(work_dir)), timeout=20)
        # the cluster slot came back too
        bulkhead = server.registry.hcc_clusters.bulkhead("alpha")
        wait_for(lambda: bulkhead.in_use == 0, timeout=10)
    assert detail(app, "alpha", job_id, alice)["state"] == "RUNNING"


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_the_node_in_a_pattern_is_the_host_slurmd_writes(app, login, users, work_dir, started, cluster):
    """%N is the batch host's NodeHostName (on the bed "vm", while the node is alpha-n1/beta-n1)."""
    alice = login("alice")
    script = QUICK.replace("echo done", "#SBATCH --output=%N-%j.out\n#SBATCH --error=%N.%u.err\necho done")
    job_id = submit(app, started, cluster, alice, {"script": script, "work_dir": str(work_dir)})

    def written():
        return sorted(p.name for p in work_dir.iterdir() if p.name.endswith(".out"))

    [name] = wait_for(written, timeout=60)
    job = detail(app, cluster, job_id, alice)
    assert job["stdout"] == f"{work_dir}/{name}" and name.endswith(f"-{job_id}.out")
    host = name.removesuffix(f"-{job_id}.out")
    assert job["stderr"] == f"{work_dir}/{host}.alice.err" and Path(job["stderr"]).exists()
    wait_for(lambda: app.get(output_url(cluster, job_id), headers=alice).body == b"done\n", timeout=30)


def test_a_large_output_streams_whole_and_from_an_offset(app, login, work_dir, started):
    """Over 1 MiB the bytes come from `dd` on an exec channel rather than the SFTP channel."""
    alice = login("alice")
    script = QUICK.replace("echo done", "seq 1 500000")  # 3.3 MiB
    job_id = submit(app, started, "alpha", alice, {"script": script, "work_dir": str(work_dir)})
    wait_for(lambda: detail(app, "alpha", job_id, alice)["state"] == "COMPLETED", timeout=60)
    expected = b"".join(b"%d\n" % i for i in range(1, 500001))
    whole = app.get(output_url("alpha", job_id), headers=alice)
    assert whole.body == expected and whole.headers["X-Output-Size"] == str(len(expected))
    assert app.get(output_url("alpha", job_id, offset=100), headers=alice).body == expected[100:]
    assert app.get(output_url("alpha", job_id, tail=2_000_000), headers=alice).body == expected[-2_000_000:]
    head = app.head(output_url("alpha", job_id), headers=alice)
    assert head.body == b"" and head.headers["X-Output-Size"] == str(len(expected))
    assert head.headers["Content-Length"] == str(len(expected))
