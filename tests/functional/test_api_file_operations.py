"""Long file operations on the real bed: jobs in alpha's partition, detached on beta, and copies
between the two (alpha -> beta pushed with a signed certificate, beta -> alpha relayed)."""

import contextlib
import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import HOSTILE_NAMES, alice_work_dir, login_token, make_app, wait_for

ALICE_HOME = Path("/home/alice")
OPERATIONS = ALICE_HOME / ".hcc" / "operations"
FINAL = {"done", "failed", "cancelled"}


@pytest.fixture(scope="module")
def ops_settings(base_settings, database_url):
    return {
        **base_settings,
        "hcc.database.url": database_url,
        # alpha runs operations as Slurm jobs in its (only) partition; beta detached on its login node
        "hcc.cluster.alpha.transfer_partition": "debug",
        "hcc.cluster.alpha.transfer_time_limit": "30",
        "hcc.operations.sync_max_files": "50",
        "hcc.operations.stale_after": "20",
    }


@pytest.fixture(scope="module")
def ops_app(ops_settings):
    return make_app(ops_settings)


@pytest.fixture
def auth(ops_app, users):
    def _auth(name: str = "alice") -> dict:
        return {"Authorization": f"Bearer {login_token(ops_app, users, name)}"}

    return _auth


@pytest.fixture
def work(users):
    with alice_work_dir(users, "ops") as path:
        yield path


def _chown_alice(path: Path, users) -> None:
    uid = users["alice"]["uid"]
    subprocess.run(["chown", "-R", f"{uid}", "--", str(path)], check=True)


def make_tree(root: Path, users, files: int = 300) -> Path:
    """A tree of ``files`` files over nested directories, with varied modes and the hostile names."""
    root.mkdir()
    for i in range(files):
        sub = root / f"d{i % 7}" / f"e{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        f = sub / f"f{i}.dat"
        f.write_bytes(os.urandom(i * 37 % 5000))
        f.chmod([0o600, 0o644, 0o755, 0o640][i % 4])
    hostile = root / "hostile"
    hostile.mkdir()
    for i, name in enumerate(HOSTILE_NAMES):
        (hostile / name).write_bytes(name.encode() * (i + 1))
    (root / "link").symlink_to("d0/e0/f0.dat")
    (root / "d1").chmod(0o750)
    _chown_alice(root, users)
    return root


def snapshot(root: Path) -> dict:
    """Every entry under root: type, mode, and content (files) or target (symlinks)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    out["."] = stat.S_IMODE(root.stat().st_mode)
    return out


def wait_final(app, headers, op: dict, timeout: float = 120.0) -> dict:
    url = f"/api/v1/clusters/{op['cluster']}/operations/{op['id']}"
    deadline = time.monotonic() + timeout
    while True:
        current = app.get(url, headers=headers, status=200).json
        if current["state"] in FINAL:
            return current
        assert time.monotonic() < deadline, f"operation still {current['state']} after {timeout} s"
        time.sleep(0.5)


def wait_running(app, headers, op: dict, timeout: float = 60.0) -> dict:
    url = f"/api/v1/clusters/{op['cluster']}/operations/{op['id']}"
    deadline = time.monotonic() + timeout
    while True:
        current = app.get(url, headers=headers, status=200).json
        if current["state"] == "running" and (current["progress"]["bytes_done"] or 0) > 0:
            return current
        assert current["state"] not in FINAL, current
        assert time.monotonic() < deadline, "never running"
        time.sleep(0.2)


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".hcc-op-")]


def start(app, headers, cluster: str, body: dict, status: int = 202):
    return app.post_json(f"/api/v1/clusters/{cluster}/operations", body, headers=headers, status=status)


@pytest.mark.parametrize(("cluster", "runner"), [("alpha", "job"), ("beta", "detached")])
def test_copy_of_a_tree_is_done_with_identical_content_and_modes(ops_app, auth, work, users, cluster, runner):
    source = make_tree(work / "src ünï", users)
    target = work / "copy $(x) `y`"
    headers = auth()
    op = start(ops_app, headers, cluster, {"kind": "copy", "path": str(source), "to": str(target)}).json
    assert (op["state"], op["runner"], op["route"], op["kind"]) == ("queued", runner, "local", "copy")
    assert (op["job_id"] is not None) == (runner == "job")
    final = wait_final(ops_app, headers, op)
    assert final["state"] == "done", final
    assert final["ended_at"] and final["error"] is None
    assert final["progress"]["bytes_done"] == final["progress"]["bytes_total"] > 0
    assert final["progress"]["files_done"] == final["progress"]["files_total"] >= 300
    assert snapshot(target) == snapshot(source)
    assert leftovers(work) == []


def test_move_and_delete_as_operations(ops_app, auth, work, users):
    source = make_tree(work / "to-move", users, files=120)
    before = snapshot(source)
    target = work / "moved -rf"
    headers = auth()
    op = start(ops_app, headers, "beta", {"kind": "move", "path": str(source), "to": str(target)}).json
    assert wait_final(ops_app, headers, op)["state"] == "done"
    assert not source.exists() and snapshot(target) == before

    op = start(ops_app, headers, "alpha", {"kind": "delete", "path": str(target)}).json
    final = wait_final(ops_app, headers, op)
    assert final["state"] == "done" and final["to"] is None
    assert final["progress"]["files_done"] == final["progress"]["files_total"] > 120
    assert not target.exists()


def test_existing_target_is_409_before_anything_starts(ops_app, auth, work, users):
    source = make_tree(work / "src", users, files=10)
    target = work / "taken"
    target.write_bytes(b"keep me")
    _chown_alice(target, users)
    folders = set(os.listdir(OPERATIONS)) if OPERATIONS.exists() else set()
    body = {"kind": "copy", "path": str(source), "to": str(target)}
    error = start(ops_app, auth(), "alpha", body, status=409).json["errors"][0]
    assert (error["code"], error["name"]) == ("already_exists", "to")
    assert target.read_bytes() == b"keep me"
    assert (set(os.listdir(OPERATIONS)) if OPERATIONS.exists() else set()) == folders
    start(ops_app, auth(), "alpha", {"kind": "copy", "path": str(work / "nope"), "to": str(work / "x")}, 404)
    start(ops_app, auth(), "alpha", {"kind": "delete", "path": str(source), "to": str(work / "x")}, 400)
    start(ops_app, auth(), "alpha", {"kind": "copy", "path": str(source), "to": str(source / "in")}, 409)
    start(ops_app, auth(), "alpha", {"kind": "copy", "path": "relative", "to": str(work / "x")}, 400)
    start(ops_app, auth(), "alpha", {"kind": "shred", "path": str(source)}, 400)


def _big_file(path: Path, users, mib: int = 1024) -> Path:
    subprocess.run(
        ["dd", "if=/dev/urandom", f"of={path}", "bs=1M", f"count={mib}", "status=none"], check=True
    )
    _chown_alice(path, users)
    return path


@contextlib.contextmanager
def slowed_down(pattern: str):
    """Keep the processes whose command line holds ``pattern`` stopped four fifths of the time (as root,
    SIGSTOP/SIGCONT), so that a fast disk cannot finish a copy between two reads of a test."""
    stop = threading.Event()

    def toggle():
        while not stop.is_set():
            subprocess.run(["pkill", "-STOP", "-f", "--", pattern], capture_output=True)
            time.sleep(0.2)
            subprocess.run(["pkill", "-CONT", "-f", "--", pattern], capture_output=True)
            time.sleep(0.05)

    thread = threading.Thread(target=toggle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        subprocess.run(["pkill", "-CONT", "-f", "--", pattern], capture_output=True)


def test_progress_rises_and_cancel_leaves_no_partial_copy(ops_app, auth, work, users):
    big = _big_file(work / "big.bin", users)
    target = work / "big copy"
    headers = auth()
    op = start(ops_app, headers, "beta", {"kind": "copy", "path": str(big), "to": str(target)}).json
    with slowed_down(f".hcc-op-{op['id']}"):
        first = wait_running(ops_app, headers, op)
        _cancel_while_running(ops_app, headers, op, first, target, work)


def _cancel_while_running(ops_app, headers, op, first, target, work):
    """Progress rises between two reads; a cancel then leaves no partial copy and no worker."""
    time.sleep(1.5)
    url = f"/api/v1/clusters/beta/operations/{op['id']}"
    second = ops_app.get(url, headers=headers, status=200).json
    assert second["state"] == "running", second
    assert second["progress"]["bytes_done"] > first["progress"]["bytes_done"]
    assert second["progress"]["bytes_total"] == 1024 * 1024 * 1024
    pid = (OPERATIONS / op["id"] / "pid").read_text().strip()
    cancelled = ops_app.delete(url, headers=headers, status=200).json
    assert cancelled["state"] == "cancelled" and cancelled["ended_at"]
    assert not target.exists() and leftovers(work) == []
    assert ops_app.get(url, headers=headers, status=200).json["state"] == "cancelled"
    error = ops_app.delete(url, headers=headers, status=409).json["errors"][0]
    assert error["code"] == "operation_finished"
    # the detached worker's process group is gone (it exits just after its last word), and its folder

    def worker_gone():
        return subprocess.run(["kill", "-0", pid], capture_output=True).returncode != 0

    wait_for(worker_gone, timeout=10)
    assert not (OPERATIONS / op["id"]).exists()


def _between(app, headers, source_cluster, source, target_cluster, target, status=202):
    body = {
        "kind": "copy",
        "from": {"cluster": source_cluster, "path": str(source)},
        "to": {"cluster": target_cluster, "path": str(target)},
    }
    return app.post_json("/api/v1/operations", body, headers=headers, status=status)


@pytest.mark.parametrize(
    ("source_cluster", "target_cluster", "route", "runner"),
    [("alpha", "beta", "push", "job"), ("beta", "alpha", "relay", "service")],
)
def test_copy_between_clusters_both_ways(
    ops_app, auth, work, users, source_cluster, target_cluster, route, runner
):
    source = make_tree(work / "results", users, files=200)
    target = work / f"on {target_cluster} 'q'"
    headers = auth()
    op = _between(ops_app, headers, source_cluster, source, target_cluster, target).json
    assert (op["route"], op["runner"], op["cluster"], op["to_cluster"]) == (
        route,
        runner,
        source_cluster,
        target_cluster,
    )
    final = wait_final(ops_app, headers, op)
    assert final["state"] == "done", final
    assert snapshot(target) == snapshot(source)
    assert leftovers(work) == []
    # the folder (and a push's credential in it) went when the outcome was read
    assert not (OPERATIONS / op["id"]).exists()
    # a push logs in to the destination with the certificate signed for this operation alone
    sshd_log = Path(f"/var/lib/hcc-testbed/log/sshd-{target_cluster}.log").read_text(errors="replace")
    assert (f'Accepted certificate ID "hcc-federation operation {op["id"]}"' in sshd_log) == (route == "push")


def test_copy_between_clusters_refuses_an_existing_target(ops_app, auth, work, users):
    source = make_tree(work / "s", users, files=3)
    taken = work / "taken"
    taken.mkdir()
    _chown_alice(taken, users)
    error = _between(ops_app, auth(), "alpha", source, "beta", taken, status=409).json["errors"][0]
    assert error["code"] == "already_exists"
    assert list(taken.iterdir()) == []
    _between(ops_app, auth(), "alpha", source, "alpha", work / "n", status=400)
    _between(ops_app, auth(), "alpha", Path("/"), "beta", work / "n", status=400)
    _between(ops_app, auth(), "alpha", source, "gamma", work / "n", status=404)


@pytest.mark.parametrize(("source_cluster", "target_cluster"), [("alpha", "beta"), ("beta", "alpha")])
def test_cancelled_copy_between_clusters_leaves_nothing(
    ops_app, auth, work, users, source_cluster, target_cluster
):
    big = _big_file(work / "big.bin", users)
    target = work / "remote copy"
    headers = auth()
    op = _between(ops_app, headers, source_cluster, big, target_cluster, target).json
    wait_running(ops_app, headers, op)
    url = f"/api/v1/clusters/{source_cluster}/operations/{op['id']}"
    assert ops_app.delete(url, headers=headers, status=200).json["state"] == "cancelled"
    assert not target.exists()

    def nothing_left():
        # the receiver on the destination ends when its stream does, which takes a moment on a busy bed
        return leftovers(work) == [] and not (OPERATIONS / op["id"]).exists()

    wait_for(nothing_left, timeout=20)
    assert not target.exists()


def test_another_users_operation_is_not_there(ops_app, auth, work, users):
    source = make_tree(work / "private", users, files=5)
    alice = auth("alice")
    op = start(ops_app, alice, "beta", {"kind": "copy", "path": str(source), "to": str(work / "c")}).json
    bob = auth("bob")
    url = f"/api/v1/clusters/beta/operations/{op['id']}"
    assert ops_app.get(url, headers=bob, status=404).json["errors"][0]["code"] == "operation_not_found"
    ops_app.delete(url, headers=bob, status=404)
    assert op["id"] not in [
        o["id"] for o in ops_app.get("/api/v1/operations", headers=bob).json["operations"]
    ]
    listed = ops_app.get("/api/v1/clusters/beta/operations", headers=bob).json["operations"]
    assert op["id"] not in [o["id"] for o in listed]
    # the wrong cluster in the URL is not the operation either
    ops_app.get(f"/api/v1/clusters/alpha/operations/{op['id']}", headers=alice, status=404)
    ops_app.get("/api/v1/clusters/beta/operations/not-an-id", headers=alice, status=404)
    assert wait_final(ops_app, alice, op)["state"] == "done"
    everywhere = ops_app.get("/api/v1/operations", headers=alice, status=200).json
    assert op["id"] in [o["id"] for o in everywhere["operations"]] and everywhere["errors"] == []
    done = ops_app.get("/api/v1/operations?state=done", headers=alice, status=200).json["operations"]
    assert {o["state"] for o in done} == {"done"}


def test_synchronous_routes_send_big_trees_to_operations(ops_app, auth, work, users):
    small = make_tree(work / "small", users, files=5)
    big = make_tree(work / "big", users, files=60)
    headers = auth()
    base = "/api/v1/clusters/alpha/files"
    ops_app.post_json(
        f"{base}/copy", {"path": str(small), "to": str(work / "s2")}, headers=headers, status=201
    )
    error = ops_app.post_json(
        f"{base}/copy", {"path": str(big), "to": str(work / "b2")}, headers=headers, status=413
    ).json["errors"][0]
    assert error["code"] == "use_an_operation" and "/operations" in error["description"]
    assert not (work / "b2").exists()
    ops_app.delete(f"{base}?path={big}&recursive=true", headers=headers, status=413)
    assert big.exists()
    ops_app.delete(f"{base}?path={work / 's2'}&recursive=true", headers=headers, status=204)


def _row(**fields):
    from hcc_federation.models import FileOperation
    from hcc_federation.models.meta import utcnow

    base = {
        "username": "alice",
        "cluster": "beta",
        "kind": "copy",
        "path": "/home/alice/x",
        "route": "local",
        "runner": "detached",
        "work_dir": "/nonexistent",
        "state": "done",
        "created_at": utcnow(),
    }
    return FileOperation(**{**base, **fields})


def test_hcc_cleanup_forgets_old_operations_and_sweeps_leftovers(ops_settings, work, users):
    from datetime import timedelta

    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from hcc_federation.models import FileOperation
    from hcc_federation.models.meta import utcnow
    from hcc_federation.operations.service import new_operation_id
    from hcc_federation.scripts.cleanup import certificate_sweeper, cleanup_operations
    from hcc_federation.settings import parse_settings

    settings = parse_settings(ops_settings)
    now = utcnow()
    old, recent, running, left = (new_operation_id() for _ in range(4))
    # what a cancelled copy left on beta (a certificate cluster): its folder and a partial target
    folder = OPERATIONS / left
    folder.mkdir(parents=True)
    (folder / "progress").write_text("state=running\n")
    partial = work / f".hcc-op-{left}"
    partial.mkdir()
    (partial / "half").write_bytes(b"x" * 100)
    _chown_alice(OPERATIONS, users)
    _chown_alice(partial, users)
    long_ago = now - timedelta(days=settings.operations.retention_days + 1)
    engine = create_engine(ops_settings["hcc.database.url"])
    with Session(engine) as db, db.begin():
        db.add_all(
            [
                _row(id=old, ended_at=long_ago, swept_at=long_ago),
                _row(id=recent, ended_at=now - timedelta(days=1), swept_at=now),
                _row(id=running, state="running", created_at=long_ago),
                _row(id=left, state="cancelled", ended_at=now, work_dir=str(folder), to_path=str(work / "t")),
            ]
        )
    sweeper, close = certificate_sweeper(settings)
    try:
        with Session(engine) as db, db.begin():
            report = cleanup_operations(db, settings.operations, sweeper=sweeper)
    finally:
        close()
    with Session(engine) as db:
        kept = set(
            db.scalars(select(FileOperation.id).where(FileOperation.id.in_([old, recent, running, left])))
        )
        swept_at = db.scalar(select(FileOperation.swept_at).where(FileOperation.id == left))
        db.execute(FileOperation.__table__.delete().where(FileOperation.id.in_([recent, running, left])))
        db.commit()
    engine.dispose()
    assert kept == {recent, running, left}
    assert report.rows >= 1 and report.swept >= 1 and swept_at is not None
    assert not folder.exists() and not partial.exists()


def test_the_all_clusters_list_names_a_failing_cluster_and_lists_the_rest(
    ops_settings, users, clusters, work
):
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from hcc_federation.operations.service import new_operation_id

    # gamma: a configured cluster whose sshd is gone (nothing listens on port 1)
    gamma = {
        "hcc.clusters": "alpha beta gamma",
        "hcc.cluster.gamma.host": "127.0.0.1",
        "hcc.cluster.gamma.port": "1",
        "hcc.cluster.gamma.known_hosts": clusters["alpha"]["known_hosts"],
        "hcc.cluster.gamma.connect_timeout": "2",
    }
    app = make_app({**ops_settings, **gamma})
    headers = {"Authorization": f"Bearer {login_token(app, users, 'alice')}"}
    source = make_tree(work / "s", users, files=3)
    op = start(app, headers, "beta", {"kind": "copy", "path": str(source), "to": str(work / "c")}).json
    stuck = new_operation_id()
    engine = create_engine(ops_settings["hcc.database.url"])
    with Session(engine) as db, db.begin():
        db.add(_row(id=stuck, cluster="gamma", state="running", work_dir="/home/alice/.hcc/operations/x"))
    try:
        answer = app.get("/api/v1/operations", headers=headers, status=200).json
        assert [e["cluster"] for e in answer["errors"]] == ["gamma"]
        assert answer["errors"][0]["status"] == 503
        states = {o["id"]: o["state"] for o in answer["operations"]}
        assert states[stuck] == "running" and op["id"] in states
    finally:
        with Session(engine) as db, db.begin():
            db.execute(_row().__table__.delete().where(_row().__table__.c.id == stuck))
        engine.dispose()
    wait_final(app, headers, op)
