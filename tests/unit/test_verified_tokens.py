"""The in-process cache of verified tokens: its time bound, its size bound and local revocation."""

from datetime import timedelta

from hcc_federation.auth.sessions import ActiveSession, VerifiedTokens
from hcc_federation.models import UserSession
from hcc_federation.models.meta import utcnow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def session(session_id: int, username: str = "alice", lives: float = 3600) -> ActiveSession:
    row = UserSession(id=session_id, username=username)
    return ActiveSession(row, None, username, utcnow() + timedelta(seconds=lives))


def test_a_token_is_trusted_for_ttl_seconds_then_checked_again():
    clock = Clock()
    cache = VerifiedTokens(5, clock)
    cache.put("t1", session(1))
    clock.now += 4.9
    assert cache.get("t1", utcnow()) is not None
    clock.now += 0.2
    assert cache.get("t1", utcnow()) is None


def test_never_past_the_session_own_end():
    cache = VerifiedTokens(5, Clock())
    cache.put("t1", session(1, lives=1))
    assert cache.get("t1", utcnow() + timedelta(seconds=2)) is None


def test_a_revocation_here_evicts_and_keeps_a_late_put_out_for_ttl():
    clock = Clock()
    cache = VerifiedTokens(5, clock)
    cache.put("t1", session(1))
    cache.put("t2", session(2, "bob"))
    cache.forget(session_id=1)
    assert cache.get("t1", utcnow()) is None
    assert cache.get("t2", utcnow()) is not None
    # a request that read the row before the revocation puts it back afterwards: refused
    cache.put("t1", session(1))
    assert cache.get("t1", utcnow()) is None
    cache.forget(username="bob")
    assert cache.get("t2", utcnow()) is None
    clock.now += 5
    cache.put("t1", session(1))
    assert cache.get("t1", utcnow()) is not None


def test_bounded_and_off_at_zero():
    cache = VerifiedTokens(5, Clock())
    for i in range(VerifiedTokens.MAX + 10):
        cache.put(f"t{i}", session(i))
    assert cache.get("t0", utcnow()) is None
    assert cache.get(f"t{VerifiedTokens.MAX + 9}", utcnow()) is not None
    off = VerifiedTokens(0, Clock())
    off.put("t1", session(1))
    assert off.get("t1", utcnow()) is None


def test_a_clock_set_back_does_not_extend_the_trust():
    clock = Clock()
    cache = VerifiedTokens(5, clock)
    cache.put("t1", session(1))
    clock.now -= 3600
    assert cache.get("t1", utcnow()) is None
