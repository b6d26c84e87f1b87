"""One request, one resolution: the cluster, the caller's credential and the path are each handled once."""

import sys
import urllib.parse
import uuid
from collections import Counter

import paramiko
import pytest

from hcc_federation.files import paths

CLUSTERS = ["alpha", "beta"]


@pytest.fixture(params=CLUSTERS)
def cluster(request, database_url) -> str:
    if "mysql" in database_url:
        pytest.skip("counts SSH-side work: the registry database plays no part")
    return request.param


def _count_path_checks(monkeypatch, counts: Counter) -> None:
    """Count every real path check, whichever module's binding of validate_path is called.

    A path that already passed the check (a CheckedPath, where that type exists) is not checked again.
    """
    original = paths.validate_path
    checked = getattr(paths, "CheckedPath", ())

    def counting(path, *args, **kwargs):
        if not isinstance(path, checked):
            counts["path checks"] += 1
        return original(path, *args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.startswith("hcc_federation") and getattr(module, "validate_path", None) is original:
            monkeypatch.setattr(module, "validate_path", counting)


def _count_calls(monkeypatch, owner, attribute: str, counts: Counter, key: str) -> None:
    original = getattr(owner, attribute)

    def counting(*args, **kwargs):
        counts[key] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, attribute, counting)


def test_a_listing_checks_its_path_opens_the_credential_and_stats_the_directory_once(
    app, login, cluster, monkeypatch
):
    headers = login("alice")
    base = f"/api/v1/clusters/{cluster}/files"
    path = f"/home/alice/hcc-access-{uuid.uuid4().hex}"
    app.post_json(base + "/mkdir", {"path": path}, headers=headers, status=201)
    try:
        app.put(base + "/content?" + urllib.parse.urlencode({"path": path + "/a.txt"}), b"a", headers=headers)
        app.post_json(base + "/mkdir", {"path": path + "/sub"}, headers=headers, status=201)
        counts: Counter = Counter()
        _count_path_checks(monkeypatch, counts)
        _count_calls(monkeypatch, app.app.registry.hcc_sessions, "credential", counts, "credential opens")
        _count_calls(monkeypatch, paramiko.SFTPClient, "stat", counts, "stats")
        _count_calls(monkeypatch, paramiko.SFTPClient, "lstat", counts, "stats")
        found = app.get(base + "?" + urllib.parse.urlencode({"path": path}), headers=headers, status=200).json
        monkeypatch.undo()
        assert [e["name"] for e in found["entries"]] == ["sub", "a.txt"]
        assert dict(counts) == {"path checks": 1, "credential opens": 1, "stats": 1}
    finally:
        app.delete(base + "?" + urllib.parse.urlencode({"path": path, "recursive": "true"}), headers=headers)


def test_the_app_refuses_to_start_on_an_unchecked_paramiko(settings, monkeypatch):
    from hcc_federation import main
    from hcc_federation.remote.paramiko_compat import UnsupportedParamiko

    monkeypatch.setattr(paramiko, "__version__", "5.2.0")
    with pytest.raises(UnsupportedParamiko, match="paramiko 5.2.0 is installed"):
        main({}, **settings)


def test_job_lists_and_probes_fan_out_on_the_one_shared_executor(app, login, database_url, monkeypatch):
    if "mysql" in database_url:
        pytest.skip("counts threads: the registry database plays no part")
    import threading
    from concurrent.futures import ThreadPoolExecutor

    headers = login("alice")
    made = []
    original = ThreadPoolExecutor.__init__

    def counting(self, *args, **kwargs):
        made.append(kwargs.get("thread_name_prefix", ""))
        original(self, *args, **kwargs)

    monkeypatch.setattr(ThreadPoolExecutor, "__init__", counting)
    for _ in range(3):
        app.get("/api/v1/clusters/alpha/jobs", headers=headers, status=200)
        assert app.get("/api/v1/jobs", headers=headers, status=200).json["errors"] == []
        app.get("/api/v1/clusters", headers=headers, status=200)
    monkeypatch.undo()
    assert made == []
    fanout = app.app.registry.hcc_fanout
    workers = [t for t in threading.enumerate() if t.name.startswith("hcc-fanout")]
    assert 0 < len(workers) <= fanout.max_workers


def test_owner_names_are_looked_up_once_per_connection_not_once_per_request(app, login, cluster, monkeypatch):
    from hcc_federation.files import metadata

    headers = login("alice")
    url = f"/api/v1/clusters/{cluster}/files?" + urllib.parse.urlencode({"path": "/home/alice"})
    app.get(url, headers=headers, status=200)  # the connection is up and has met alice's ids
    lookups = Counter()
    original = metadata.sftp_extended

    def counting(sftp, name, *args):
        lookups[name] += 1
        return original(sftp, name, *args)

    monkeypatch.setattr(metadata, "sftp_extended", counting)
    for _ in range(3):
        assert {e["owner"] for e in app.get(url, headers=headers, status=200).json["entries"]} >= {"alice"}
    monkeypatch.undo()
    assert lookups["users-groups-by-id@openssh.com"] == 0


def test_the_federated_job_list_opens_the_credential_once_for_every_cluster(
    app, login, database_url, monkeypatch
):
    if "mysql" in database_url:
        pytest.skip("counts credential opens: the registry database plays no part")
    headers = login("alice")
    counts: Counter = Counter()
    _count_calls(monkeypatch, app.app.registry.hcc_sessions, "credential", counts, "credential opens")
    found = app.get("/api/v1/jobs", headers=headers, status=200).json
    monkeypatch.undo()
    assert found["errors"] == []
    assert len(app.app.registry.hcc_clusters) == 2
    assert dict(counts) == {"credential opens": 1}
