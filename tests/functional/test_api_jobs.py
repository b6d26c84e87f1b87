"""The jobs API against the test bed's real Slurm clusters, through SSH as the caller."""

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from hcc_federation.jobs.schemas import JOB_FIELDS
from hcc_federation.models import JobSubmission
from hcc_federation.timefmt import rfc3339
from tests.helpers import (
    alice_work_dir,
    jobs_cancelled_afterwards,
    login_token,
    make_app,
    migrate,
    run_testbed_up,
    stop_testbed_daemon,
    wait_for,
)

CLUSTERS = ["alpha", "beta"]
OTHER = {"alpha": "beta", "beta": "alpha"}
NAME = 'a|b "c" ü'
# Tiny jobs: the two clusters share 2 real CPUs (each advertises both) with other test runs.
SLEEP = "#!/bin/sh\n#SBATCH --time=1\n#SBATCH --mem=10M\nsleep 30\n"
HELD = "#!/bin/sh\n#SBATCH --time=1\n#SBATCH --mem=10M\n#SBATCH --hold\ntrue\n"
# Spins one CPU holding 30 MiB (touched, so resident) for at most 40 s; cancelled once sampled.
BURN = (
    "#!/bin/sh\n"
    "#SBATCH --time=1\n"
    "#SBATCH --mem=50M\n"
    "exec python3 -c 'import time\n"
    'block = b"x" * (30 * 1024 * 1024)\n'
    "end = time.time() + 40\n"
    "while time.time() < end: pass'\n"
)


def skip_on_mysql(database_url):
    # For the Slurm-heavy tests only: the registry row they write is checked on both database
    # kinds by test_a_submission_is_recorded_in_the_registry, and their Slurm part does not
    # depend on the database, so running them twice would only double minutes of real jobs.
    if database_url.startswith("mysql"):
        pytest.skip("Slurm-heavy: runs on SQLite only; the registry part is covered on both databases")


def commands_run(app) -> int:
    # every command leases a transport once: a new connection or a reuse of one
    stats = app.app.registry.hcc_pool.stats()
    return stats["connects"] + stats["reuses"]


def registry_rows(app, cluster: str, job_id: str) -> list[JobSubmission]:
    with Session(app.app.registry.hcc_engine) as db:
        return list(
            db.scalars(
                select(JobSubmission).where(JobSubmission.cluster == cluster, JobSubmission.job_id == job_id)
            )
        )


@pytest.fixture
def work_dir(users):
    with alice_work_dir(users, "hcc-api-jobs") as path:
        yield path


@pytest.fixture
def started(clusters):
    """(cluster, job id) pairs to scancel as root whatever the test's outcome."""
    with jobs_cancelled_afterwards(clusters) as jobs:
        yield jobs


@pytest.fixture
def submit(app, started):
    """submit(cluster, headers, body) -> the new job's id, cancelled after the test."""

    def _submit(cluster: str, headers: dict, body: dict) -> str:
        r = app.post_json(f"/api/v1/clusters/{cluster}/jobs", body, headers=headers, status=201)
        assert r.json["cluster"] == cluster
        job_id = r.json["id"]
        started.append((cluster, job_id))
        assert r.headers["Location"].endswith(f"/api/v1/clusters/{cluster}/jobs/{job_id}")
        return job_id

    return _submit


# --------------------------------------------------------------------------------------------
# The whole life of a job, on each cluster (alpha logs in with a password, beta a certificate)


@pytest.mark.slow
@pytest.mark.parametrize("cluster", CLUSTERS)
def test_job_lifecycle(app, login, clusters, users, database_url, work_dir, submit, cluster):
    skip_on_mysql(database_url)
    alice, bob = login("alice"), login("bob")
    base = f"/api/v1/clusters/{cluster}/jobs"
    tag = uuid.uuid4().hex[:8]
    name = f"{NAME} {tag}"

    script = work_dir / "sleep job.sh"
    script.write_text(SLEEP)
    os.chown(script, users["alice"]["uid"], -1)
    by_path = submit(cluster, alice, {"script_path": str(script)})
    inline = submit(cluster, alice, {"script": BURN, "work_dir": str(work_dir), "name": name})

    # both are recorded under (cluster, id), after sbatch
    [row] = registry_rows(app, cluster, by_path)
    assert (row.username, row.script_path, row.work_dir) == ("alice", str(script), str(work_dir))
    [row] = registry_rows(app, cluster, inline)
    assert (row.username, row.script_path, row.work_dir, row.name) == ("alice", None, str(work_dir), name)

    # both are listed at once (squeue merged with sacct), with exactly the contract's fields
    r = app.get(base, headers=alice, status=200)
    assert r.json["cluster"] == cluster
    listed = {job["id"]: job for job in r.json["jobs"]}
    assert {by_path, inline} <= set(listed)
    assert set(listed[inline]) == set(JOB_FIELDS)
    assert listed[inline]["name"] == name
    assert listed[by_path]["work_dir"] == str(work_dir)  # sbatch ran in the script's own directory
    assert listed[inline]["user"] == "alice" and listed[inline]["partition"] == clusters[cluster]["partition"]
    assert listed[inline]["account"] == clusters[cluster]["account"]
    assert listed[inline]["memory"] == 50 and listed[inline]["time_limit_seconds"] == 60
    submit_times = [job["submit_time"] or "" for job in r.json["jobs"]]
    assert submit_times == sorted(submit_times, reverse=True)  # newest first
    live = app.get(base, {"state": "running,PENDING"}, headers=alice, status=200).json["jobs"]
    assert {by_path, inline} <= {job["id"] for job in live}
    assert {job["state"] for job in live} <= {"RUNNING", "PENDING"}

    # running, then the usage shows the python process's CPU and its 30 MiB on the node
    def burning():
        job = app.get(f"{base}/{inline}", headers=alice, status=200).json
        node = job["usage"]["nodes"][0] if job["usage"] and job["usage"]["nodes"] else None
        return job if node and node["cpu_percent"] > 10 and node["rss_bytes"] > 30 * 2**20 else None

    detail = wait_for(burning, timeout=90)
    assert detail["cluster"] == cluster and detail["id"] == inline and detail["state"] == "RUNNING"
    assert detail["name"] == name and detail["script"] == BURN and detail["work_dir"] == str(work_dir)
    assert set(JOB_FIELDS) <= set(detail)
    [node] = detail["usage"]["nodes"]
    assert node["node"] == clusters[cluster]["node"]
    assert node["processes"][0]["command"] == "python3" and node["processes"][0]["cpu_percent"] > 10
    assert any(step["id"] == f"{inline}.batch" for step in detail["usage"]["steps"])

    # another user neither sees, reads nor cancels it
    assert inline not in {job["id"] for job in app.get(base, headers=bob, status=200).json["jobs"]}
    r = app.get(f"{base}/{inline}", headers=bob, status=403)
    assert r.json["errors"][0]["name"] == "job_id"
    app.delete(f"{base}/{inline}", headers=bob, status=403)

    # the same id on the other cluster is another job, or none (ids are per cluster)
    r = app.get(f"/api/v1/clusters/{OTHER[cluster]}/jobs/{inline}", headers=alice, status="*")
    assert r.status_int in (200, 403, 404)
    if r.status_int == 200:
        assert r.json["cluster"] == OTHER[cluster] and r.json["name"] != name

    # cancelled: both end CANCELLED, and a second cancel is a conflict
    app.delete(f"{base}/{inline}", headers=alice, status=204)
    app.delete(f"{base}/{by_path}", headers=alice, status=204)
    for job_id in (inline, by_path):

        def cancelled(job_id=job_id):
            return app.get(f"{base}/{job_id}", headers=alice, status=200).json["state"] == "CANCELLED"

        wait_for(cancelled, timeout=30)
    r = app.delete(f"{base}/{inline}", headers=alice, status=409)
    assert "finished" in r.json["errors"][0]["description"]
    gone = app.get(base, {"state": "CANCELLED", "limit": "500"}, headers=alice, status=200).json["jobs"]
    assert inline in {job["id"] for job in gone} and {job["state"] for job in gone} == {"CANCELLED"}
    assert len(app.get(base, {"limit": "1"}, headers=alice, status=200).json["jobs"]) == 1


# --------------------------------------------------------------------------------------------
# Submissions: the registry on both database kinds, Slurm's refusals, literal arguments


def test_a_submission_is_recorded_in_the_registry(app, login, work_dir, submit):
    """Runs on SQLite and MariaDB: the row (with a non-ASCII name) is what the database keeps."""
    name = f"{NAME} {uuid.uuid4().hex[:8]}"
    job_id = submit("alpha", login("alice"), {"script": HELD, "work_dir": str(work_dir), "name": name})
    [row] = registry_rows(app, "alpha", job_id)
    assert (row.username, row.name, row.work_dir, row.script_path) == ("alice", name, str(work_dir), None)
    assert row.client_addr == "127.0.0.1" and row.submitted_at is not None
    # the held job is pending with Slurm's reason, under its exact name
    job = app.get(f"/api/v1/clusters/alpha/jobs/{job_id}", headers=login("alice"), status=200).json
    assert (job["state"], job["name"], job["usage"]) == ("PENDING", name, None)
    assert job["reason"] and job["exit_code"] is None


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_slurms_refusal_is_a_400_with_its_message_and_no_record(app, login, work_dir, cluster):
    script = "#!/bin/sh\n#SBATCH --partition=nosuchpartition\n#SBATCH --time=1\ntrue\n"
    r = app.post_json(
        f"/api/v1/clusters/{cluster}/jobs",
        {"script": script, "work_dir": str(work_dir)},
        headers=login("alice"),
        status=400,
    )
    assert "Invalid partition name specified" in r.json["errors"][0]["description"]
    missing = str(work_dir / "missing.sh")
    r = app.post_json(
        f"/api/v1/clusters/{cluster}/jobs", {"script_path": missing}, headers=login("alice"), status=400
    )
    assert missing in r.json["errors"][0]["description"]
    with Session(app.app.registry.hcc_engine) as db:
        assert not db.scalars(select(JobSubmission).where(JobSubmission.work_dir == str(work_dir))).all()


def test_hostile_paths_and_names_are_taken_literally(app, login, work_dir, submit, database_url):
    alice = login("alice")
    canary = Path(f"/tmp/hcc-canary-{uuid.uuid4().hex}")
    hostile = f"$(touch {canary});touch {canary}`touch {canary}`"
    # a script path that would run commands in a shell: sbatch looks for that very file name
    path = f"{work_dir}/{hostile}.sh"
    r = app.post_json("/api/v1/clusters/beta/jobs", {"script_path": path}, headers=alice, status=400)
    assert path in r.json["errors"][0]["description"]
    # a work dir and a name made of shell syntax arrive as they are
    odd_dir = f"{work_dir}/{hostile} ü"
    job_id = submit("beta", alice, {"script": HELD, "work_dir": odd_dir, "name": hostile})
    job = app.get(f"/api/v1/clusters/beta/jobs/{job_id}", headers=alice, status=200).json
    assert (job["work_dir"], job["name"]) == (odd_dir, hostile)
    assert not canary.exists()


def test_invalid_bodies_are_400_and_run_nothing(app, login):
    alice = login("alice")
    url = "/api/v1/clusters/alpha/jobs"
    bad = [
        ({}, "script"),
        ({"script_path": "/a.sh", "script": "#!/bin/sh\ntrue\n", "work_dir": "/tmp"}, "script"),
        ({"script": "#!/bin/sh\ntrue\n"}, "work_dir"),
        ({"script": "   \n", "work_dir": "/tmp"}, "script"),
        ({"script": "#!/bin/sh\n\x00true\n", "work_dir": "/tmp"}, "script"),
        ({"script": "#!/bin/sh\ntrue\n", "work_dir": "tmp"}, "work_dir"),
        ({"script": "#!/bin/sh\ntrue\n", "work_dir": "/tmp/a\nb"}, "work_dir"),
        ({"script": "#!/bin/sh\ntrue\n", "work_dir": "/tmp", "name": "a\nb"}, "name"),
        ({"script": "#!/bin/sh\ntrue\n", "work_dir": "/tmp", "name": "x" * 201}, "name"),
        ({"script": "#!/bin/sh\ntrue\n", "work_dir": "/tmp", "name": 7}, "name"),
        ({"script": ["#!/bin/sh"], "work_dir": "/tmp"}, "script"),
        ({"script_path": "../run.sh"}, "script_path"),
        ({"script_path": "run.sh"}, "script_path"),
        ({"script_path": "/" + "a" * 5000}, "script_path"),
        ({"script_path": "/tmp/run.sh", "work_dir": "/tmp"}, "work_dir"),
        ({"script_path": "/tmp/run.sh", "name": "x"}, "name"),
        ({"script_path": "/tmp/run.sh", "nodes": 2}, ""),
    ]
    before = commands_run(app)
    for body, field in bad:
        r = app.post_json(url, body, headers=alice, status=400)
        assert r.json["status"] == "error" and r.json["errors"][0]["name"] == field, body
    app.post(url, "not json", headers={**alice, "Content-Type": "application/json"}, status=400)
    app.post(url, "script=x", headers=alice, status=415)
    assert commands_run(app) == before


def test_a_script_over_1_mib_is_refused(app, login, settings, users):
    script = "#!/bin/sh\n" + "#" * (1024 * 1024)
    body = {"script": script, "work_dir": "/tmp"}
    # the request body limit (1 MiB by default) answers first...
    app.post_json("/api/v1/clusters/alpha/jobs", body, headers=login("alice"), status=413)
    # ...and where a deployment allows larger bodies, the script's own bound still holds
    roomy = make_app({**settings, "hcc.api.max_body_bytes": str(4 * 1024 * 1024)})
    token = login_token(roomy, users, "alice")
    r = roomy.post_json(
        "/api/v1/clusters/alpha/jobs", body, headers={"Authorization": f"Bearer {token}"}, status=400
    )
    assert r.json["errors"][0]["name"] == "script" and "1048576 bytes" in r.json["errors"][0]["description"]
    assert commands_run(roomy) == 0


@pytest.mark.parametrize(
    "query, field",
    [
        ({"since": "2026-13-01"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"since": "1900-01-01"}, "since"),
        ({"state": "RUNNING,NOPE"}, "state"),
        ({"state": ","}, "state"),
        ({"state": "RUNNING;id"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limits": "1"}, ""),
    ],
)
def test_invalid_list_queries_are_400_and_run_nothing(app, login, query, field):
    alice = login("alice")
    before = commands_run(app)
    for url in ("/api/v1/clusters/alpha/jobs", "/api/v1/jobs"):
        r = app.get(url, query, headers=alice, status=400)
        assert r.json["errors"][0]["location"] == "querystring" and r.json["errors"][0]["name"] == field
    assert commands_run(app) == before


@pytest.mark.parametrize(
    "job_id", ["1;id", "$(id)", "`id`", "1 2", "1\n2", "1\n", "-1", "1.batch", "1_", "+1", "١٢"]
)
def test_hostile_job_ids_are_refused_before_anything_runs(app, login, job_id):
    alice = login("alice")
    before = commands_run(app)
    url = "/api/v1/clusters/alpha/jobs/" + "".join(c if c.isalnum() else f"%{ord(c):02X}" for c in job_id)
    if not job_id.isascii():
        url = "/api/v1/clusters/alpha/jobs/%D9%A1%D9%A2"
    for call in (app.get, app.delete):
        r = call(url, headers=alice, status=400)
        assert (r.json["errors"][0]["location"], r.json["errors"][0]["name"]) == ("path", "job_id")
    assert commands_run(app) == before


def test_path_traversal_in_a_job_id_matches_no_route(app, login):
    for url in ("/api/v1/clusters/alpha/jobs/..%2F..%2Fclusters", "/api/v1/clusters/alpha/jobs/..%2F"):
        app.get(url, headers=login("alice"), status=404)


def test_unknown_job_and_unknown_cluster_are_404(app, login):
    alice = login("alice")
    r = app.get("/api/v1/clusters/alpha/jobs/999999999", headers=alice, status=404)
    assert r.json["errors"][0]["name"] == "job_id"
    app.delete("/api/v1/clusters/beta/jobs/999999999_3", headers=alice, status=404)
    r = app.get("/api/v1/clusters/gamma/jobs", headers=alice, status=404)
    assert r.json["errors"][0]["name"] == "cluster"
    r = app.post_json("/api/v1/clusters/gamma/jobs", {"script_path": "/tmp/x.sh"}, headers=alice, status=404)
    assert r.json["errors"][0]["name"] == "cluster"
    app.get("/api/v1/clusters/gamma/jobs/1", headers=alice, status=404)


def test_jobs_need_a_session(app):
    app.get("/api/v1/jobs", status=401)
    app.get("/api/v1/clusters/alpha/jobs", status=401)
    app.post_json("/api/v1/clusters/alpha/jobs", {"script_path": "/tmp/x.sh"}, status=401)
    app.get("/api/v1/clusters/alpha/jobs/1", status=401)
    app.delete("/api/v1/clusters/alpha/jobs/1", status=401)


# --------------------------------------------------------------------------------------------
# Every cluster at once


@pytest.mark.slow
def test_federated_list_and_a_stopped_cluster(app, login, endpoints, database_url, work_dir, submit):
    skip_on_mysql(database_url)  # no database logic here beyond the session, tested everywhere
    alice = login("alice")
    names = {cluster: f"{NAME} {cluster} {uuid.uuid4().hex[:8]}" for cluster in CLUSTERS}
    ids = {
        cluster: submit(cluster, alice, {"script": HELD, "work_dir": str(work_dir), "name": names[cluster]})
        for cluster in CLUSTERS
    }

    asked = datetime.now(UTC)
    r = app.get("/api/v1/jobs", headers=alice, status=200)
    assert r.json["errors"] == []
    jobs = r.json["jobs"]
    for cluster in CLUSTERS:
        [mine] = [job for job in jobs if job["name"] == names[cluster]]
        assert (mine["cluster"], mine["id"], mine["state"]) == (cluster, ids[cluster], "PENDING")
    submit_times = [job["submit_time"] or "" for job in jobs]
    assert submit_times == sorted(submit_times, reverse=True)
    # the federated list is the union of the per-cluster lists, each keyed by (cluster, id); other
    # test runs may submit as alice meanwhile, so only jobs older than the federated call must match
    single = {
        (cluster, job["id"]): job["submit_time"]
        for cluster in CLUSTERS
        for job in app.get(f"/api/v1/clusters/{cluster}/jobs", headers=alice).json["jobs"]
    }
    federated = {(job["cluster"], job["id"]) for job in jobs}
    assert federated <= set(single)
    older = rfc3339(asked - timedelta(seconds=2))
    assert {key for key, submitted in single.items() if submitted and submitted < older} <= federated
    assert len(app.get("/api/v1/jobs", {"limit": "1"}, headers=alice).json["jobs"]) == 1
    held = app.get("/api/v1/jobs", {"state": "PENDING"}, headers=alice).json["jobs"]
    assert {(job["cluster"], job["id"]) for job in held} >= {(c, ids[c]) for c in CLUSTERS}

    # ids repeat across clusters: each detail is its own cluster's job
    for cluster in CLUSTERS:
        r = app.get(f"/api/v1/clusters/{OTHER[cluster]}/jobs/{ids[cluster]}", headers=alice, status="*")
        assert r.status_int in (200, 403, 404)
        if r.status_int == 200:
            assert r.json["name"] != names[cluster]
    by_cluster = {
        cluster: {job["id"]: job for job in jobs if job["cluster"] == cluster} for cluster in CLUSTERS
    }
    shared = sorted(i for i in set(by_cluster["alpha"]) & set(by_cluster["beta"]) if i.isdigit())[-2:]
    for job_id in shared:  # alice's history usually holds some; each must answer for its own cluster
        for cluster in CLUSTERS:
            detail = app.get(f"/api/v1/clusters/{cluster}/jobs/{job_id}", headers=alice).json
            assert (detail["cluster"], detail["submit_time"], detail["name"]) == (
                cluster,
                by_cluster[cluster][job_id]["submit_time"],
                by_cluster[cluster][job_id]["name"],
            )

    pidfile = endpoints["clusters"]["beta"]["sshd_pidfile"]
    stop_testbed_daemon(pidfile, "/usr/sbin/sshd")
    try:
        # established sessions outlive a stopped listener: drop them as a dead host would
        app.app.registry.hcc_pool.close_all()
        started = time.monotonic()
        r = app.get("/api/v1/jobs", headers=alice, status=200)
        elapsed = time.monotonic() - started
        [error] = r.json["errors"]
        assert error["cluster"] == "beta" and error["status"] == 503 and "beta" in error["description"]
        assert {job["cluster"] for job in r.json["jobs"]} == {"alpha"}
        assert ids["alpha"] in {job["id"] for job in r.json["jobs"]}
        assert elapsed < 10
    finally:
        run_testbed_up()
    # the next call heals: beta is back
    r = app.get("/api/v1/jobs", headers=alice, status=200)
    assert r.json["errors"] == [] and ids["beta"] in {
        j["id"] for j in r.json["jobs"] if j["cluster"] == "beta"
    }


def test_a_job_whose_record_fails_still_reaches_its_owner(
    base_settings, users, work_dir, started, tmp_path, caplog
):
    """The job exists once sbatch said so: a registry that fails then must not hide its id."""
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    migrate(url)
    app = make_app({**base_settings, "hcc.database.url": url})
    token = login_token(app, users, "alice")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE job_submissions"))
    engine.dispose()
    body = {"script": HELD, "work_dir": str(work_dir), "name": "unrecorded"}
    r = app.post_json(
        "/api/v1/clusters/alpha/jobs", body, headers={"Authorization": f"Bearer {token}"}, status=201
    )
    started.append(("alpha", r.json["id"]))
    assert f"job {r.json['id']} on alpha by alice" in caplog.text and "NOT recorded" in caplog.text


def test_names_that_accounting_altered_come_back_from_the_registry(
    app, login, work_dir, submit, database_url
):
    """slurmdbd keeps " as a backtick: once slurmctld forgets a job (MinJobAge, 300 s) its name
    would come back altered. The registry's name wins where the two differ only by that."""
    alice = login("alice")
    job_id = submit(
        "alpha", alice, {"script": HELD, "work_dir": str(work_dir), "name": f"rec `{job_token()}`"}
    )
    slurm_name = app.get(f"/api/v1/clusters/alpha/jobs/{job_id}", headers=alice).json["name"]
    # what the registry would hold had the job been submitted as rec "..."; Slurm still says rec `...`
    exact = slurm_name.replace("`", '"')
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE job_submissions SET name = :n WHERE cluster = 'alpha' AND job_id = :j"),
            {"n": exact, "j": job_id},
        )
    engine.dispose()
    assert app.get(f"/api/v1/clusters/alpha/jobs/{job_id}", headers=alice).json["name"] == exact
    listed = app.get("/api/v1/clusters/alpha/jobs", headers=alice).json["jobs"]
    assert [job["name"] for job in listed if job["id"] == job_id] == [exact]
    federated = app.get("/api/v1/jobs", headers=alice).json["jobs"]
    assert [j["name"] for j in federated if (j["cluster"], j["id"]) == ("alpha", job_id)] == [exact]


def job_token() -> str:
    return uuid.uuid4().hex[:8]
