"""The login service without Pyramid or servers: SQLite for the registry, a stand-in for the directory."""

import pytest
from sqlalchemy import select

from hcc_federation.auth.directory import (
    DirectoryUnavailable,
    InvalidCredentials,
    Person,
    WrongCurrentPassword,
)
from hcc_federation.auth.login import LoginService
from hcc_federation.auth.sessions import LoginThrottle, SessionStore, TooManyAttempts
from hcc_federation.db import make_engine, session_factory
from hcc_federation.models import AuditEvent, LoginAttempt
from hcc_federation.models.meta import Base
from hcc_federation.settings import parse_settings
from tests.helpers import BASE_SETTINGS


class FakeDirectory:
    """Answers authenticate() from a dict, or raises what it is told to; records who was asked."""

    def __init__(self, passwords: dict[str, str], error: Exception | None = None):
        self.passwords = passwords
        self.error = error
        self.asked: list[str] = []

    def authenticate(self, username: str, password: str) -> Person:
        self.asked.append(username)
        if self.error is not None:
            raise self.error
        if self.passwords.get(username) != password:
            raise InvalidCredentials(reason="wrong password")
        return Person(username, f"uid={username}", None, None, None)


@pytest.fixture
def factory(tmp_path):
    settings = parse_settings({**BASE_SETTINGS, "hcc.database.url": f"sqlite:///{tmp_path}/r.sqlite"}, {})
    engine = make_engine(settings.database)
    Base.metadata.create_all(engine)
    yield settings, session_factory(engine)
    engine.dispose()


def service(factory, directory, **raw) -> LoginService:
    settings, dbsessions = factory
    settings = parse_settings({**BASE_SETTINGS, **raw}, {}) if raw else settings
    return LoginService.from_settings(
        settings,
        throttle=LoginThrottle.from_settings(settings),
        directory=directory,
        sessions=SessionStore.from_settings(settings),
        dbsession_factory=dbsessions,
        credential=lambda username, password: {"password": password},
    )


def _login(svc: LoginService, username: str, password: str):
    with svc.dbsession_factory() as db, db.begin():
        return svc.login(db, username, password, "127.0.0.1")


def _audit(svc: LoginService) -> list[tuple[str, str, str]]:
    with svc.dbsession_factory() as db:
        return [
            (e.username, e.outcome, e.detail) for e in db.scalars(select(AuditEvent).order_by(AuditEvent.id))
        ]


def test_a_right_password_opens_a_session_with_the_credential(factory):
    svc = service(factory, FakeDirectory({"alice": "pw"}))
    session = _login(svc, "alice", "pw")
    assert session.username == "alice"
    assert svc.sessions.credential(session) == {"password": "pw"}
    assert _audit(svc) == [("alice", "success", "")]


def test_a_malformed_username_never_reaches_the_directory(factory):
    directory = FakeDirectory({"Alice": "pw"})
    svc = service(factory, directory)
    with pytest.raises(InvalidCredentials):
        _login(svc, "Alice", "pw")
    assert directory.asked == []
    assert _audit(svc) == [("Alice", "failure", "malformed username")]


def test_the_username_pattern_setting_decides_what_is_malformed(factory):
    directory = FakeDirectory({"Alice": "pw"})
    svc = service(factory, directory, **{"hcc.auth.username_pattern": "^[A-Za-z]+$"})
    assert _login(svc, "Alice", "pw").username == "Alice"


def test_a_directory_outage_does_not_count_against_the_person(factory):
    svc = service(factory, FakeDirectory({}, error=DirectoryUnavailable("the directory is unreachable")))
    for _ in range(6):  # one more than throttle_max_per_user: none of them counted
        with pytest.raises(DirectoryUnavailable):
            _login(svc, "alice", "pw")
    with svc.dbsession_factory() as db:
        assert db.scalars(select(LoginAttempt)).all() == []
    assert {outcome for _, outcome, _ in _audit(svc)} == {"error"}


def test_wrong_passwords_are_throttled_before_the_directory_is_asked(factory):
    directory = FakeDirectory({"alice": "pw"})
    svc = service(factory, directory, **{"hcc.auth.throttle_max_per_user": "2"})
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            _login(svc, "alice", "wrong")
    with pytest.raises(TooManyAttempts):
        _login(svc, "alice", "pw")
    assert directory.asked == ["alice", "alice"]


class FakePasswordDirectory(FakeDirectory):
    def change_password(self, username: str, current: str, new: str) -> None:
        self.asked.append(username)
        if self.error is not None:
            raise self.error
        if self.passwords.get(username) != current:
            raise WrongCurrentPassword("the current password is wrong")
        self.passwords[username] = new


def _change(svc: LoginService, current: str, new: str) -> int:
    with svc.dbsession_factory() as db, db.begin():
        return svc.change_password(db, "alice", current, new, "127.0.0.1")


def test_a_password_change_ends_every_session(factory):
    directory = FakePasswordDirectory({"alice": "old"})
    svc = service(factory, directory)
    first, second = _login(svc, "alice", "old"), _login(svc, "alice", "old")
    assert _change(svc, "old", "new") == 2
    with svc.dbsession_factory() as db:
        assert svc.sessions.lookup(db, str(first.token)) is None
        assert svc.sessions.lookup(db, str(second.token)) is None
    assert directory.passwords == {"alice": "new"}


def test_wrong_current_passwords_count_like_wrong_logins(factory):
    svc = service(factory, FakePasswordDirectory({"alice": "old"}), **{"hcc.auth.throttle_max_per_user": "2"})
    for _ in range(2):
        with pytest.raises(WrongCurrentPassword):
            _change(svc, "guess", "new")
    with pytest.raises(TooManyAttempts) as info:
        _change(svc, "old", "new")
    assert info.value.field == "current_password"
    assert [outcome for _, outcome, _ in _audit(svc)] == ["failure", "failure", "throttled"]
