"""Jupyter notebooks through the API on both bed clusters, in both modes, with a real Jupyter server."""

import os
import signal
import subprocess

import pytest
from sqlalchemy import delete

from hcc_federation.models import Notebook
from hcc_federation.notebooks.service import probe_server
from tests.helpers import login_token, make_app, wait_for

JUPYTER = "/opt/hcc-testbed-jupyter/bin/jupyter-server"


def notebook_settings(endpoints: dict, **extra) -> dict:
    low, high = endpoints["jupyter"]["port_range"]
    out = {}
    for name in ("alpha", "beta"):
        prefix = f"hcc.cluster.{name}."
        out |= {
            prefix + "notebook_modes": "login batch",
            prefix + "notebook_command": JUPYTER,
            prefix + "notebook_ports": f"{low}-{high}",
            prefix + "notebook_max_per_user": "3",
            prefix + "notebook_max_hours": "4",
            prefix + "command_timeout": "30",
        }
    return out | extra


@pytest.fixture(scope="module", autouse=True)
def _notebook_folders_removed():
    """The tests' notebook folders go with the module (the service keeps them, with their logs)."""
    yield
    for user in ("alice", "bob"):
        subprocess.run(["rm", "-rf", "--", f"/home/{user}/.hcc-notebooks"], check=False)


@pytest.fixture(scope="module")
def nb_app(settings, endpoints):
    return make_app({**settings, **notebook_settings(endpoints)})


@pytest.fixture
def auth(nb_app, users):
    return lambda name="alice": {"Authorization": f"Bearer {login_token(nb_app, users, name)}"}


def _listening(port: int) -> bool:
    out = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True).stdout
    return bool(out.strip())


def _wait_state(nb_app, headers, cluster, nb_id, states, timeout=90):
    def state():
        body = nb_app.get(f"/api/v1/clusters/{cluster}/notebooks/{nb_id}", headers=headers).json
        return body if body["state"] in states else None

    state.__name__ = f"notebook {nb_id} in {states}"
    return wait_for(state, timeout=timeout, interval=1.0)


def owner_access(registry, cluster: str, user: dict):
    """The cluster as ``user``, the way the service reaches it (password on alpha, certificate on beta)."""
    from datetime import timedelta

    from hcc_federation.clusters.access import ClusterAccess
    from hcc_federation.remote import PasswordIdentity, make_certificate_identity

    cluster_obj = registry.hcc_clusters.get(cluster)
    if cluster_obj.settings.identity == "certificate":
        identity = make_certificate_identity(
            registry.hcc_ca_key, user["name"], valid_for=timedelta(minutes=10), key_id="test-notebooks"
        )
    else:
        identity = PasswordIdentity(user["name"], user["password"])
    return ClusterAccess(registry.hcc_pool, cluster_obj, identity)


def stored(registry, nb_id: str) -> Notebook:
    with registry.hcc_dbsession_factory() as db:
        nb = db.get(Notebook, nb_id)
        db.expunge(nb)
        return nb


@pytest.mark.parametrize("mode", ["login", "batch"])
@pytest.mark.parametrize("cluster", ["alpha", "beta"])
def test_start_reach_and_stop(nb_app, auth, users, cluster, mode):
    alice = auth("alice")
    url = f"/api/v1/clusters/{cluster}/notebooks"
    started = nb_app.post_json(url, {"mode": mode, "hours": 1}, headers=alice, status=201).json
    assert started["state"] in ("pending", "starting")
    assert started["mode"] == mode and started["cluster"] == cluster
    try:
        running = _wait_state(nb_app, alice, cluster, started["id"], ("running", "failed"))
        assert running["state"] == "running", running
        store = nb_app.app.registry.hcc_notebook_store
        token = store.open(stored(nb_app.app.registry, started["id"]).token)
        assert running["url"].endswith("?token=" + token)
        if mode == "batch":
            assert running["job_id"]
        # Jupyter's own API, reached through the cluster's SSH connection with the token
        nb = stored(nb_app.app.registry, started["id"])
        access = owner_access(nb_app.app.registry, cluster, users["alice"])
        answer = probe_server(access, nb, token, "/api/contents")
        assert answer is not None and answer.status == 200, answer
        assert answer.json()["type"] == "directory"
        assert _listening(nb.port)
        # bob sees neither the notebook nor its token
        bob = auth("bob")
        nb_app.get(f"{url}/{nb.id}", headers=bob, status=404)
        nb_app.delete(f"{url}/{nb.id}", headers=bob, status=404)
        assert token not in nb_app.get(url, headers=bob).text
        assert token not in nb_app.get("/api/v1/notebooks", headers=bob).text
        # the token reaches the cluster in a 0600 file of a 0700 folder, and the registry only sealed
        assert token not in nb.token and os.stat(f"{nb.folder}/token").st_mode & 0o077 == 0
        assert (
            os.stat(nb.folder).st_mode & 0o077 == 0 and os.stat(f"{nb.folder}/key.pem").st_mode & 0o077 == 0
        )
        listed = nb_app.get("/api/v1/notebooks", headers=alice).json
        assert nb.id in [n["id"] for n in listed["notebooks"]]
    finally:
        nb_app.delete(f"{url}/{started['id']}", headers=alice, status=204)
    after = nb_app.get(f"{url}/{started['id']}", headers=alice).json
    assert after["state"] == "stopped" and after["url"] is None
    wait_for(lambda: not _listening(nb.port), timeout=20)
    # the ended notebook's token and key are gone from its folder, its log stays
    assert not os.path.exists(f"{nb.folder}/token") and not os.path.exists(f"{nb.folder}/key.pem")
    assert os.path.exists(f"{nb.folder}/server.log")
    with nb_app.app.registry.hcc_dbsession_factory() as db:
        from hcc_federation.models import NotebookPort, NotebookSlot

        assert db.query(NotebookPort).filter_by(notebook_id=nb.id).count() == 0
        assert db.query(NotebookSlot).filter_by(notebook_id=nb.id).count() == 0
    if mode == "login":

        def ended():
            stat = subprocess.run(["ps", "-o", "stat=", "-p", str(nb.pid)], capture_output=True, text=True)
            return stat.stdout.strip() in ("", "Z")

        wait_for(ended, timeout=10)
    else:
        env = {**os.environ, "SLURM_CONF": f"/var/lib/hcc-testbed/etc/slurm-{cluster}/slurm.conf"}
        queue = subprocess.run(
            ["squeue", "-h", "-j", nb.job_id, "-o", "%T"], env=env, capture_output=True, text=True
        )
        assert queue.stdout.strip() in ("", "COMPLETING", "CANCELLED")


@pytest.mark.parametrize("mode", ["batch", "login"])
def test_a_server_that_exits_at_once_fails_with_its_output(settings, endpoints, users, tmp_path, mode):
    template = tmp_path / "broken.sh"
    template.write_text("#!/bin/bash\necho 'the site template broke: no jupyter module'\nexit 3\n")
    extra = {
        "hcc.cluster.alpha.notebook_job_template": str(template),
        # login mode: a command that is not a Jupyter server at all
        "hcc.cluster.alpha.notebook_command": "sh -c 'echo the site template broke: no jupyter module >&2'",
    }
    app = make_app({**settings, **notebook_settings(endpoints, **extra)})
    headers = {"Authorization": f"Bearer {login_token(app, users, 'alice')}"}
    started = app.post_json(
        "/api/v1/clusters/alpha/notebooks", {"mode": mode}, headers=headers, status=201
    ).json
    failed = _wait_state(app, headers, "alpha", started["id"], ("failed", "running", "stopped"), timeout=60)
    assert failed["state"] == "failed"
    assert "the site template broke: no jupyter module" in failed["error"]
    assert failed["url"] is None
    # its slot is free again: the cap counts live notebooks only
    with app.app.registry.hcc_dbsession_factory() as db:
        from hcc_federation.models import NotebookPort, NotebookSlot

        assert db.query(NotebookSlot).filter_by(notebook_id=started["id"]).count() == 0
        assert db.query(NotebookPort).filter_by(notebook_id=started["id"]).count() == 0


def test_a_queued_job_is_pending_with_slurms_reason(settings, endpoints, users, tmp_path):
    template = tmp_path / "held.sh"
    # a site template may hold the job (here: always), as a full partition would keep it queued
    template.write_text("#!/bin/bash\n#SBATCH --hold\nsleep 600\n")
    app = make_app(
        {
            **settings,
            **notebook_settings(endpoints, **{"hcc.cluster.beta.notebook_job_template": str(template)}),
        }
    )
    headers = {"Authorization": f"Bearer {login_token(app, users, 'alice')}"}
    url = "/api/v1/clusters/beta/notebooks"
    started = app.post_json(url, {"mode": "batch"}, headers=headers, status=201).json
    try:
        pending = app.get(f"{url}/{started['id']}", headers=headers).json
        assert pending["state"] == "pending" and pending["job_id"] == started["job_id"]
        assert pending["reason"] == "JobHeldUser"
    finally:
        app.delete(f"{url}/{started['id']}", headers=headers, status=204)
    env = {**os.environ, "SLURM_CONF": endpoints["clusters"]["beta"]["slurm_conf"]}
    queue = subprocess.run(
        ["squeue", "-h", "-j", started["job_id"], "-o", "%T"], env=env, capture_output=True, text=True
    )
    assert queue.stdout.strip() in ("", "CANCELLED")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"mode": "batch", "partition": "no-such-partition"}, "partition"),
        ({"mode": "login", "partition": "debug"}, "partition"),
        ({"hours": 5}, "hours"),
        ({"mode": "batch", "cpus": 9}, "cpus"),
        ({"mode": "batch", "memory": 40000}, "memory"),
        ({"mode": "elsewhere"}, "mode"),
        ({"work_dir": "/no/such/dir"}, "work_dir"),
        ({"hours": "2"}, "hours"),
    ],
)
def test_values_outside_what_the_cluster_allows_are_400_naming_the_field(nb_app, auth, body, field):
    answer = nb_app.post_json("/api/v1/clusters/alpha/notebooks", body, headers=auth(), status=400).json
    assert [e["name"] for e in answer["errors"]] == [field], answer


def test_cleanup_stops_an_expired_notebook(nb_app, auth):
    from sqlalchemy import update

    from hcc_federation.scripts.cleanup import cleanup_notebooks

    headers = auth("alice")
    registry = nb_app.app.registry
    started = nb_app.post_json("/api/v1/clusters/beta/notebooks", {"mode": "login"}, headers=headers).json
    nb = stored(registry, started["id"])
    try:
        # still young: cleanup leaves it alone
        cleanup_notebooks(registry.hcc_settings, registry.hcc_dbsession_factory)
        assert stored(registry, nb.id).state in ("starting", "running")
        with registry.hcc_dbsession_factory() as db, db.begin():
            db.execute(update(Notebook).where(Notebook.id == nb.id).values(expires_at=nb.created_at))
        counts = cleanup_notebooks(registry.hcc_settings, registry.hcc_dbsession_factory)
        assert counts["expired"] >= 1
        after = stored(registry, nb.id)
        assert after.state == "stopped" and "maximum age" in after.error
        wait_for(lambda: not _listening(nb.port), timeout=20)
    finally:
        nb_app.delete(f"/api/v1/clusters/beta/notebooks/{nb.id}", headers=headers, status=204)


def test_cleanup_marks_a_notebook_whose_process_is_gone_stopped(nb_app, auth):
    from hcc_federation.scripts.cleanup import cleanup_notebooks

    headers = auth("alice")
    registry = nb_app.app.registry
    url = "/api/v1/clusters/beta/notebooks"
    started = nb_app.post_json(url, {"mode": "login"}, headers=headers).json
    _wait_state(nb_app, headers, "beta", started["id"], ("running",))
    nb = stored(registry, started["id"])
    # the server dies outside the service (an admin, the OOM killer)
    os.killpg(nb.pid, signal.SIGKILL)
    wait_for(lambda: not _listening(nb.port), timeout=20)
    counts = cleanup_notebooks(registry.hcc_settings, registry.hcc_dbsession_factory)
    assert counts["ended"] >= 1
    after = nb_app.get(f"{url}/{nb.id}", headers=headers).json
    assert after["state"] == "stopped" and after["error"].startswith("the server ended")
    with registry.hcc_dbsession_factory() as db:
        from hcc_federation.models import NotebookPort

        assert db.query(NotebookPort).filter_by(notebook_id=nb.id).count() == 0


def test_two_services_start_40_notebooks_at_once_on_distinct_ports(settings, endpoints, users, database_url):
    """Two services on one MariaDB, two clusters on one host: 40 concurrent starts, 40 distinct ports."""
    if not database_url.startswith("mysql"):
        pytest.skip("replicas share MariaDB")
    from concurrent.futures import ThreadPoolExecutor

    from tests.liveserver import live_server

    low = endpoints["jupyter"]["port_range"][0]
    # a light stand-in for Jupyter (it takes the server's options and ignores them): 40 real servers
    # do not fit on the bed's two cores, and the ports are claimed before any server starts
    extra = {}
    for name in ("alpha", "beta"):
        extra |= {
            # no exec: the shell keeps the options (with the notebook's folder) that `ps` identifies it by
            f"hcc.cluster.{name}.notebook_command": "sh -c 'sleep 300' stand-in",
            f"hcc.cluster.{name}.notebook_ports": f"{low}-{low + 39}",
            f"hcc.cluster.{name}.notebook_max_per_user": "20",
            f"hcc.cluster.{name}.max_sessions": "8",
            # 20 starts at once on each cluster: a share that holds them all, queueing for sessions
            f"hcc.cluster.{name}.max_concurrent_requests": "20",
            f"hcc.cluster.{name}.queue_timeout": "60",
        }
    # each start holds its request's connection and commits its claims on a second one
    extra |= {
        "hcc.database.pool_size": "25",
        "hcc.database.max_overflow": "25",
        "hcc.database.pool_timeout": "30",
    }
    extra |= {"hcc.database.max_concurrent_calls": "24", "hcc.database.call_queue_timeout": "30"}
    app_settings = {**settings, **notebook_settings(endpoints, **extra)}
    with live_server(app_settings, threads=24) as one, live_server(app_settings, threads=24) as two:
        tokens = {
            (server, name): server.login(name, users[name]["password"])
            for server in (one, two)
            for name in ("alice", "bob")
        }
        plan = [(one, "alpha", "alice")] * 10 + [(one, "alpha", "bob")] * 10
        plan += [(two, "beta", "alice")] * 10 + [(two, "beta", "bob")] * 10

        def start(step):
            server, cluster, name = step
            return (
                cluster,
                name,
                server.call(
                    "POST",
                    f"/api/v1/clusters/{cluster}/notebooks",
                    token=tokens[(server, name)],
                    body={"mode": "login"},
                    timeout=120,
                ),
            )

        started = []
        try:
            with ThreadPoolExecutor(40) as pool:
                answers = list(pool.map(start, plan))
            started = [(c, n, a.json) for c, n, a in answers if a.status == 201]
            assert [a.status for _, _, a in answers] == [201] * 40, [a.body[:200] for _, _, a in answers]
            ports = [body["port"] for _, _, body in started]
            assert len(set(ports)) == 40 and all(low <= p <= low + 39 for p in ports)
            assert {body["host"] for _, _, body in started} == {started[0][2]["host"]}
            # the 41st: the range is used up on this host, whichever cluster asks
            extra_answer = two.call(
                "POST",
                "/api/v1/clusters/alpha/notebooks",
                token=tokens[(two, "alice")],
                body={"mode": "login"},
            )
            assert extra_answer.status == 409 and extra_answer.json["errors"][0]["code"] == "no_free_port"
            pids = [stored(one.registry, body["id"]).pid for _, _, body in started]
        finally:
            stops = [
                (one if cluster == "alpha" else two).call(
                    "DELETE",
                    f"/api/v1/clusters/{cluster}/notebooks/{body['id']}",
                    token=tokens[(one if cluster == "alpha" else two, name)],
                )
                for cluster, name, body in started
            ]
        assert [a.status for a in stops] == [204] * 40
        # every stand-in ended with its notebook, its child too (the registry's pid was the right one)
        wait_for(lambda: not any(_alive(pid) for pid in pids), timeout=30)


def _alive(pid: int) -> bool:
    """Whether any process of the group that ``pid`` leads still runs (the server and its children)."""
    table = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True).stdout
    return any(
        line.split()[0] == str(pid) and not line.split()[1].startswith("Z") for line in table.splitlines()
    )


class _InOrder:
    """A stand-in for the service's random choice of ports: the range in order, lowest first."""

    def shuffle(self, ports):
        ports.sort()


@pytest.mark.parametrize("mode", ["login", "batch"])
def test_a_port_taken_outside_the_registry_is_retried_unseen(settings, endpoints, users, monkeypatch, mode):
    import socket

    from hcc_federation.notebooks import service

    low, high = endpoints["jupyter"]["port_range"]
    # two neighbours from the top of the bed's range that nothing listens on now (other tests' notebooks may)
    taken = next(p for p in range(high - 1, low, -1) if not _listening(p) and not _listening(p + 1))
    free = taken + 1
    app = make_app(
        {
            **settings,
            **notebook_settings(endpoints, **{"hcc.cluster.alpha.notebook_ports": f"{taken}-{free}"}),
        }
    )
    headers = {"Authorization": f"Bearer {login_token(app, users, 'alice')}"}
    monkeypatch.setattr(service, "_rng", _InOrder())
    # something the registry knows nothing about listens on the first port the service will pick
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        started = app.post_json("/api/v1/clusters/alpha/notebooks", {"mode": mode}, headers=headers).json
        try:
            if mode == "login":
                assert started["port"] == taken
            running = _wait_state(app, headers, "alpha", started["id"], ("running", "failed"))
            assert running["state"] == "running", running
            assert running["port"] == free and running["error"] is None
        finally:
            app.delete(f"/api/v1/clusters/alpha/notebooks/{started['id']}", headers=headers, status=204)


def test_the_per_person_cap_is_429_and_counts_live_notebooks_only(settings, endpoints, users):
    extra = {
        "hcc.cluster.alpha.notebook_command": "sh -c 'sleep 300' stand-in",
        "hcc.cluster.alpha.notebook_max_per_user": "1",
    }
    app = make_app({**settings, **notebook_settings(endpoints, **extra)})
    bob = {"Authorization": f"Bearer {login_token(app, users, 'bob')}"}
    alice = {"Authorization": f"Bearer {login_token(app, users, 'alice')}"}
    url = "/api/v1/clusters/alpha/notebooks"
    first = app.post_json(url, {"mode": "login"}, headers=bob, status=201).json
    try:
        refused = app.post_json(url, {"mode": "login"}, headers=bob, status=429)
        assert refused.json["errors"][0]["code"] == "notebook_limit" and refused.headers["Retry-After"]
        # another person's cap is their own
        other = app.post_json(url, {"mode": "login"}, headers=alice, status=201).json
        app.delete(f"{url}/{other['id']}", headers=alice, status=204)
    finally:
        app.delete(f"{url}/{first['id']}", headers=bob, status=204)
    again = app.post_json(url, {"mode": "login"}, headers=bob, status=201).json
    app.delete(f"{url}/{again['id']}", headers=bob, status=204)
    # a refused start leaves no row behind
    ids = [n["id"] for n in app.get(url, headers=bob).json["notebooks"]]
    assert first["id"] in ids and again["id"] in ids and len(ids) == len(set(ids))


def test_a_job_sbatch_refuses_is_400_with_slurms_message(settings, endpoints, users, tmp_path):
    template = tmp_path / "refused.sh"
    template.write_text("#!/bin/bash\n#SBATCH --no-such-sbatch-option\nsleep 600\n")
    app = make_app(
        {
            **settings,
            **notebook_settings(endpoints, **{"hcc.cluster.alpha.notebook_job_template": str(template)}),
        }
    )
    headers = {"Authorization": f"Bearer {login_token(app, users, 'alice')}"}
    url = "/api/v1/clusters/alpha/notebooks"
    refused = app.post_json(url, {"mode": "batch"}, headers=headers, status=400).json["errors"][0]
    assert refused["code"] == "notebook_refused" and "no-such-sbatch-option" in refused["description"]
    # what was tried stays on record as failed, holding no slot
    listed = app.get(url, headers=headers).json["notebooks"]
    assert listed[0]["state"] == "failed" and "no-such-sbatch-option" in listed[0]["error"]


def test_the_all_clusters_list_names_a_failing_cluster_and_keeps_the_others(settings, endpoints, users):
    gamma = {
        "hcc.clusters": "alpha beta gamma",
        "hcc.cluster.gamma.host": "127.0.0.1",
        "hcc.cluster.gamma.port": "9",  # nothing listens: refused at once
        "hcc.cluster.gamma.known_hosts": endpoints["clusters"]["alpha"]["known_hosts"],
        "hcc.cluster.gamma.connect_timeout": "2",
        "hcc.cluster.gamma.notebook_modes": "login",
    }
    app = make_app({**settings, **notebook_settings(endpoints), **gamma})
    headers = {"Authorization": f"Bearer {login_token(app, users, 'alice')}"}
    # a live notebook on gamma (from before it went down): reading it needs the cluster
    from datetime import timedelta

    from hcc_federation.models.meta import utcnow

    now = utcnow()
    with app.app.registry.hcc_dbsession_factory() as db, db.begin():
        db.add(
            Notebook(
                id="0" * 32,
                username="alice",
                cluster="gamma",
                mode="login",
                state="running",
                host="g",
                port=8100,
                address="127.0.0.1",
                token=app.app.registry.hcc_notebook_store.seal("t"),
                pid=4242,
                folder="/home/alice/.hcc-notebooks/x",
                work_dir="/home/alice",
                attempt=0,
                created_at=now,
                expires_at=now + timedelta(hours=1),
                client_addr="127.0.0.1",
            )
        )
    listed = app.get("/api/v1/notebooks", headers=headers).json
    assert [e["cluster"] for e in listed["errors"]] == ["gamma"]
    assert listed["errors"][0]["status"] == 503 and listed["errors"][0]["code"] == "cluster_unreachable"
    assert all(n["cluster"] != "gamma" for n in listed["notebooks"])
    with app.app.registry.hcc_dbsession_factory() as db, db.begin():
        db.execute(delete(Notebook).where(Notebook.id == "0" * 32))
