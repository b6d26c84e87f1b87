"""How a read moves a notebook's state on, the cluster's answers scripted (the registry is real SQLite)."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from hcc_federation.jobs.errors import SlurmUnavailable
from hcc_federation.models import Notebook, NotebookPort
from hcc_federation.models.meta import utcnow
from hcc_federation.notebooks import service
from hcc_federation.remote.result import CommandResult
from hcc_federation.settings import ClusterSettings
from tests.helpers import migrate


@pytest.fixture
def sessions(tmp_path):
    url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    migrate(url)
    engine = create_engine(url)
    yield service.NotebookStore(sessionmaker(bind=engine, expire_on_commit=False), b"s" * 32)
    engine.dispose()


class ScriptedCluster:
    """A ClusterAccess whose commands answer from a script: {argv[0]: (exit status, stdout, stderr)}."""

    def __init__(self, answers):
        self.cluster = SimpleNamespace(
            name="alpha",
            settings=ClusterSettings(name="alpha", host="h", known_hosts="/k", notebook_modes=("batch",)),
        )
        self.answers = answers
        self.ran = []

    def run(self, argv, stdin=None, timeout=None):
        self.ran.append(argv[0])
        status, out, err = self.answers[argv[0]]
        return CommandResult(tuple(argv), status, out.encode(), err.encode())

    def sftp(self):
        raise AssertionError("no SFTP expected here")


def _batch(sessions, state="running") -> Notebook:
    now = utcnow()
    nb = Notebook(
        id="a" * 32,
        username="alice",
        cluster="alpha",
        mode="batch",
        state=state,
        host="n1",
        port=8100,
        address="10.0.0.1",
        token="t",
        job_id="42",
        folder="/home/alice/.hcc-notebooks/x",
        work_dir="/home/alice",
        attempt=0,
        created_at=now,
        expires_at=now + timedelta(hours=1),
        client_addr="127.0.0.1",
    )
    with sessions() as db, db.begin():
        db.add(nb)
        db.add(NotebookPort(host="n1", port=8100, notebook_id=nb.id))
    return service._reload(sessions, nb.id)


def test_slurm_not_answering_is_not_a_job_that_ended(sessions):
    nb = _batch(sessions)
    down = ScriptedCluster(
        {"squeue": (1, "", "squeue: error: Unable to contact slurm controller (connect failure)")}
    )
    with pytest.raises(SlurmUnavailable):
        service.refresh(down, sessions, nb)
    after = service._reload(sessions, nb.id)
    assert after.state == "running" and after.stopped_at is None
    with sessions() as db:
        assert db.get(NotebookPort, ("n1", 8100)) is not None


def test_a_running_job_that_is_still_queued_costs_one_squeue(sessions):
    nb = _batch(sessions)
    up = ScriptedCluster({"squeue": (0, "RUNNING|None\n", "")})
    assert service.refresh(up, sessions, nb).state == "running"
    assert up.ran == ["squeue"]


def test_a_job_pending_takes_slurms_reason(sessions):
    nb = _batch(sessions, state="pending")
    queued = ScriptedCluster({"squeue": (0, "PENDING|Priority\n", "")})
    after = service.refresh(queued, sessions, nb)
    assert (after.state, after.reason) == ("pending", "Priority")


def test_tokens_are_sealed_under_the_server_secret(sessions):
    sealed = sessions.seal("the-token")
    assert "the-token" not in sealed and sessions.open(sealed) == "the-token"
    assert sessions.seal("the-token") != sealed  # a fresh nonce each time
    other = service.NotebookStore(sessions, b"t" * 32)
    with pytest.raises(InvalidTag):
        other.open(sealed)
