"""Jupyter notebooks through the API on both bed clusters, in both modes, with a real Jupyter server."""

import os
import subprocess

import pytest

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
        assert running["url"].endswith("?token=" + stored(nb_app.app.registry, started["id"]).token)
        if mode == "batch":
            assert running["job_id"]
        # Jupyter's own API, reached through the cluster's SSH connection with the token
        nb = stored(nb_app.app.registry, started["id"])
        answer = probe_server(owner_access(nb_app.app.registry, cluster, users["alice"]), nb, "/api/contents")
        assert answer is not None and answer.status == 200, answer
        assert answer.json()["type"] == "directory"
        assert _listening(nb.port)
        # bob sees neither the notebook nor its token
        bob = auth("bob")
        nb_app.get(f"{url}/{nb.id}", headers=bob, status=404)
        nb_app.delete(f"{url}/{nb.id}", headers=bob, status=404)
        assert nb.token not in nb_app.get(url, headers=bob).text
        assert nb.token not in nb_app.get("/api/v1/notebooks", headers=bob).text
        listed = nb_app.get("/api/v1/notebooks", headers=alice).json
        assert nb.id in [n["id"] for n in listed["notebooks"]]
    finally:
        nb_app.delete(f"{url}/{started['id']}", headers=alice, status=204)
    after = nb_app.get(f"{url}/{started['id']}", headers=alice).json
    assert after["state"] == "stopped" and after["url"] is None
    wait_for(lambda: not _listening(nb.port), timeout=20)
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
