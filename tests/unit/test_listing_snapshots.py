"""ListingSnapshots' bounds, with a clock of the test's own (no server)."""

from hcc_federation.files.listing import ListingSnapshots


def test_expired_snapshots_go_when_another_is_kept():
    clock = [0.0]
    snapshots = ListingSnapshots(10, clock=lambda: clock[0])
    owner = object()
    snapshots.put(owner, "/home/alice/a", (1, 2), [("a",)] * 5)
    snapshots.put(owner, "/home/alice/b", (1, 2), [("b",)] * 5)
    assert len(snapshots) == 2
    clock[0] = 10.5  # both expired; nobody asked for them again
    snapshots.put(owner, "/home/alice/c", (1, 2), [("c",)] * 3)
    assert len(snapshots) == 1
    assert snapshots._rows == 3
    assert snapshots.get(owner, "/home/alice/c", (1, 2)) == [("c",)] * 3


def test_a_snapshot_within_its_window_is_kept_beside_a_new_one():
    clock = [0.0]
    snapshots = ListingSnapshots(10, clock=lambda: clock[0])
    owner = object()
    snapshots.put(owner, "/a", (1, 2), [("a",)] * 4)
    clock[0] = 9.0
    snapshots.put(owner, "/b", (1, 2), [("b",)] * 4)
    assert len(snapshots) == 2
    assert snapshots.get(owner, "/a", (1, 2)) == [("a",)] * 4
