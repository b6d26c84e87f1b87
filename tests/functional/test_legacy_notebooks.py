"""The legacy portal's notebook routes on the bed: real Jupyter servers through the notebooks service."""

import time

import pytest

from tests.functional.test_api_notebooks import (
    _listening,
    _notebook_folders_removed,  # noqa: F401 (the module's notebook folders go with it)
    notebook_settings,
    owner_access,
    stored,
)
from tests.functional.test_legacy import portal_login
from tests.helpers import make_app, wait_for

# each cluster's first mode is its default, the one start_jupyter takes: both modes are covered
MODES = {"alpha": "batch", "beta": "login"}


@pytest.fixture(scope="module")
def nb_app(settings, endpoints):
    modes = {
        f"hcc.cluster.{name}.notebook_modes": f"{mode} {'login' if mode == 'batch' else 'batch'}"
        for name, mode in MODES.items()
    }
    return make_app({**settings, **notebook_settings(endpoints), **modes})


def _jupyters(nb_app, headers, cluster, label="rhino") -> dict:
    answer = nb_app.get(f"/{cluster}/myapp/get_jupyters/{label}", headers=headers, status=200).json
    return {nb["id"]: nb for nb in answer["jupyters"]}


@pytest.mark.parametrize("cluster", ["alpha", "beta"])
def test_start_reach_and_stop_through_the_portal_routes(nb_app, users, cluster):
    # one token, made at alpha, serves both clusters, as the portal's servers map does
    alice = portal_login(nb_app, users, "alice", "alpha")
    bob = portal_login(nb_app, users, "bob", "alpha")
    base = f"/{cluster}/myapp"
    before = time.time()
    started = nb_app.post_json(f"{base}/start_jupyter", {"cluster": "rhino"}, headers=alice, status=200).json
    try:
        # the portal's label, not the cluster's name; the cluster of the URL prefix
        assert started["cluster"] == "rhino" and started["username"] == "alice"
        assert before - 5 <= started["startedAt"] <= time.time() + 5
        row = stored(nb_app.app.registry, started["id"])
        assert (row.cluster, row.mode) == (cluster, MODES[cluster])
        assert started["token"] == nb_app.app.registry.hcc_notebook_store.open(row.token)
        if MODES[cluster] == "login":
            assert started["pid"] == row.pid and isinstance(started["pid"], int) and started["port"]
        else:
            assert started["pid"] is None

        # listed under any label (kept as given) until the server answers its token
        def running():
            listed = _jupyters(nb_app, alice, cluster, "my cluster")
            assert started["id"] in listed, listed
            nb = stored(nb_app.app.registry, started["id"])
            assert nb.state in ("pending", "starting", "running"), (nb.state, nb.error)
            return listed[started["id"]] if nb.state == "running" else None

        shown = wait_for(running, timeout=90, interval=1.0)
        assert shown["cluster"] == "my cluster" and shown["token"] == started["token"]
        nb = stored(nb_app.app.registry, started["id"])
        assert shown["port"] == nb.port and _listening(nb.port)
        assert shown["pid"] == (nb.pid if MODES[cluster] == "login" else None)
        # Jupyter's own API with the token the portal got, through the cluster's SSH connection
        from hcc_federation.notebooks.service import probe_server

        access = owner_access(nb_app.app.registry, cluster, users["alice"])
        answer = probe_server(access, nb, shown["token"], "/api/contents")
        assert answer is not None and answer.status == 200, answer
        assert answer.json()["type"] == "directory"

        # bob neither sees it nor stops it; on another cluster it is not found either
        assert started["id"] not in _jupyters(nb_app, bob, cluster)
        assert started["token"] not in nb_app.get(f"{base}/get_jupyters/rhino", headers=bob).text
        r = nb_app.post_json(f"{base}/stop_jupyter", {"jupyterId": started["id"]}, headers=bob, status=404)
        assert r.json["errors"][0]["code"] == "notebook_not_found"
        other = "beta" if cluster == "alpha" else "alpha"
        nb_app.post_json(
            f"/{other}/myapp/stop_jupyter", {"jupyterId": started["id"]}, headers=alice, status=404
        )
        assert stored(nb_app.app.registry, started["id"]).state == "running"
    finally:
        r = nb_app.post_json(f"{base}/stop_jupyter", {"jupyterId": started["id"]}, headers=alice, status=200)
        assert r.json == {"ok": True}
    # stopped: gone from the portal's list, the server gone and its port free
    assert started["id"] not in _jupyters(nb_app, alice, cluster)
    assert stored(nb_app.app.registry, started["id"]).state == "stopped"
    wait_for(lambda: not _listening(nb.port), timeout=20)
    # a second stop is as harmless as in /api/v1
    nb_app.post_json(f"{base}/stop_jupyter", {"jupyterId": started["id"]}, headers=alice, status=200)


def test_portal_arguments_are_checked(nb_app, users):
    alice = portal_login(nb_app, users, "alice", "alpha")
    r = nb_app.post_json("/beta/myapp/start_jupyter", {"cluster": ""}, headers=alice, status=400)
    assert r.json["errors"][0]["name"] == "cluster"
    nb_app.post_json(
        "/beta/myapp/start_jupyter", {"cluster": "x", "mode": "batch"}, headers=alice, status=400
    )
    r = nb_app.post_json("/beta/myapp/stop_jupyter", {"jupyterId": "../../x"}, headers=alice, status=404)
    assert r.json["errors"][0]["code"] == "notebook_not_found"
    nb_app.post_json("/beta/myapp/stop_jupyter", {"jupyterId": 7}, headers=alice, status=400)
    nb_app.post_json("/nowhere/myapp/start_jupyter", {"cluster": "x"}, headers=alice, status=404)
    nb_app.post_json("/beta/myapp/start_jupyter", {"cluster": "x"}, status=401)
