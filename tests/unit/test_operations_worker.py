"""The operation worker's scripts run here with bash and coreutils (no cluster), and its pure parts."""

import os
import subprocess
from pathlib import Path

import pytest

from hcc_federation.operations import worker
from hcc_federation.operations.progress import (
    Progress,
    format_progress,
    parse_du,
    parse_job_id,
    parse_pid,
    parse_progress,
)
from tests.helpers import HOSTILE_NAMES

OP_ID = "0123456789abcdef0123456789abcdef"


def run_worker(tmp_path: Path, *params: str) -> Progress:
    folder = tmp_path / "op"
    folder.mkdir()
    (folder / "run.sh").write_text(worker.RUN_SCRIPT)
    (folder / "params").write_bytes(worker.encode_params(*params))
    done = subprocess.run(["bash", str(folder / "run.sh"), str(folder)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    progress = parse_progress((folder / "progress").read_text())
    assert progress is not None
    return progress


def tree(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = (p.lstat().st_mode, None if p.is_dir() else p.read_bytes())
    return out


def make_source(root: Path) -> Path:
    root.mkdir()
    for i, name in enumerate(HOSTILE_NAMES):
        (root / name).write_bytes(os.urandom(i * 100))
        (root / name).chmod(0o640 if i % 2 else 0o755)
    (root / "sub").mkdir()
    (root / "sub" / "f").write_text("x")
    return root


def test_a_copy_lands_whole_under_its_name_with_modes_and_counts(tmp_path):
    source = make_source(tmp_path / "src $(x)")
    target = tmp_path / "-rf `y`"
    progress = run_worker(tmp_path, "copy", str(source), str(target), worker.temp_path(str(target), OP_ID))
    assert progress.state == "done" and progress.error is None
    assert tree(target) == tree(source)
    assert progress.files_done == progress.files_total == len(HOSTILE_NAMES) + 3
    assert progress.bytes_done == progress.bytes_total > 0
    assert not any(p.name.startswith(worker.TEMP_PREFIX) for p in tmp_path.iterdir())


def test_a_copy_never_replaces_what_exists(tmp_path):
    source = make_source(tmp_path / "src")
    target = tmp_path / "taken"
    target.write_text("keep")
    progress = run_worker(tmp_path, "copy", str(source), str(target), worker.temp_path(str(target), OP_ID))
    assert progress.state == "failed" and "already exists" in progress.error
    assert target.read_text() == "keep"
    assert not any(p.name.startswith(worker.TEMP_PREFIX) for p in tmp_path.iterdir())


def test_a_failed_copy_says_why(tmp_path):
    source = make_source(tmp_path / "src")
    target = tmp_path / "no such dir" / "t"
    progress = run_worker(tmp_path, "copy", str(source), str(target), worker.temp_path(str(target), OP_ID))
    assert progress.state == "failed" and "cp failed" in progress.error and "No such file" in progress.error
    assert not target.parent.exists()


def test_move_and_delete(tmp_path):
    source = make_source(tmp_path / "a")
    before = tree(source)
    target = tmp_path / "b"
    assert run_worker(tmp_path, "move", str(source), str(target), "").state == "done"
    assert not source.exists() and tree(target) == before
    (tmp_path / "op").rename(tmp_path / "op1")
    progress = run_worker(tmp_path, "delete", str(target), "", "")
    assert progress.state == "done" and not target.exists()
    assert progress.files_done == progress.files_total == len(before) + 1


def test_the_receiver_unpacks_under_a_temporary_name_then_renames(tmp_path):
    source = make_source(tmp_path / "src")
    target = tmp_path / "arrived 'q'"
    folder = tmp_path / "recv"
    folder.mkdir()
    (folder / "recv.sh").write_text(worker.RECEIVE_SCRIPT)
    (folder / "recv_params").write_bytes(
        worker.receive_params(str(target), worker.temp_path(str(target), OP_ID), source.name)
    )
    archive = subprocess.run(worker.archive_argv(str(source)), capture_output=True, check=True).stdout
    archive += worker.TRAILER
    done = subprocess.run(["bash", str(folder / "recv.sh"), str(folder)], input=archive, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert tree(target) == tree(source)
    # a second copy onto it is refused and leaves nothing behind
    done = subprocess.run(["bash", str(folder / "recv.sh"), str(folder)], input=archive, capture_output=True)
    assert done.returncode == 17 and b"already exists" in done.stderr
    assert not any(p.name.startswith(worker.TEMP_PREFIX) for p in tmp_path.iterdir())
    # a stream cut anywhere (even at a block boundary, which tar takes for a whole archive, or just
    # before the trailer) leaves nothing either
    other = tmp_path / "other"
    (folder / "recv_params").write_bytes(
        worker.receive_params(str(other), worker.temp_path(str(other), OP_ID), source.name)
    )
    for cut in (512, 10240, len(archive) // 2, len(archive) - len(worker.TRAILER)):
        done = subprocess.run(
            ["bash", str(folder / "recv.sh"), str(folder)], input=archive[:cut], capture_output=True
        )
        assert done.returncode != 0 and not other.exists(), cut
        assert not any(p.name.startswith(worker.TEMP_PREFIX) for p in tmp_path.iterdir())


def test_progress_round_trip_and_refusals():
    progress = Progress("running", 5, 10, 1, None, 1700000000, "a\nb")
    parsed = parse_progress(format_progress(progress))
    assert parsed == Progress("running", 5, 10, 1, None, 1700000000, "a b")
    assert parse_progress("") is None and parse_progress("state=exploded\n") is None
    assert parse_progress("state=done\nbytes_done=x\n").bytes_done is None


def test_small_parsers():
    assert parse_job_id("4242\n") == "4242" and parse_job_id("17;alpha\n") == "17"
    assert parse_job_id("sbatch: error") is None
    assert parse_pid("123\n") == 123 and parse_pid("1") is None and parse_pid("x") is None
    assert parse_du("2048\t/home/a/b c\n") == 2048 and parse_du("du: cannot") is None


def test_argv_and_names():
    assert worker.temp_path("/a/b/name", OP_ID) == f"/a/b/{worker.TEMP_PREFIX}{OP_ID}"
    assert len(worker.TEMP_PREFIX + OP_ID) < 255
    with pytest.raises(ValueError):
        worker.encode_params("a\x00b")
    argv = worker.sbatch_argv("/h/.hcc/operations/x", "xfer", 90)
    assert (
        "--partition=xfer" in argv
        and "--time=90" in argv
        and argv[-2:] == ["/h/.hcc/operations/x/run.sh", "/h/.hcc/operations/x"]
    )
    assert worker.cancel_argv(job_id="12", pid=None) == ["scancel", "12"]
    assert worker.cancel_argv(job_id=None, pid=345) == ["kill", "-TERM", "--", "-345"]
    assert worker.cancel_argv(job_id=None, pid=None) is None
    assert worker.archive_argv("/d/-rf")[-2:] == ["--", "-rf"]


def test_a_push_certificate_is_good_for_its_receiver_only():
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import load_ssh_public_identity

    from hcc_federation.operations.crossing import push_certificate

    identity = push_certificate(ed25519.Ed25519PrivateKey.generate(), "alice", OP_ID, 300)
    cert = load_ssh_public_identity(identity.certificate.encode())
    assert cert.valid_principals == [b"alice"]
    assert cert.key_id == f"hcc-federation operation {OP_ID}".encode()
    assert cert.valid_before - cert.valid_after == 300 + 60  # ttl plus the clock skew allowance
    assert cert.extensions == {}  # no pty, no forwarding, no agent
    command = f"bash .hcc/operations/{OP_ID}/recv.sh .hcc/operations/{OP_ID}"
    assert cert.critical_options == {b"force-command": command.encode()}


def test_a_move_across_file_systems_copies_renames_then_removes(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system than the temporary directory")
    source = make_source(shm / f"hcc-test-move-{OP_ID}")
    try:
        before = tree(source)
        target = tmp_path / "moved here"
        progress = run_worker(
            tmp_path, "move", str(source), str(target), worker.temp_path(str(target), OP_ID)
        )
        assert progress.state == "done", progress
        assert tree(target) == before and not source.exists()
        assert not any(p.name.startswith(worker.TEMP_PREFIX) for p in tmp_path.iterdir())
    finally:
        subprocess.run(["rm", "-rf", "--", str(source)], check=False)
