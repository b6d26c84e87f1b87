"""A cluster's partitions and nodes as the caller sees them: sinfo, its parser, and a short-lived cache."""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from ..jobs.parsers import parse_duration
from ..remote.errors import RemoteTimeout
from ..remote.result import CommandResult
from .registry import Cluster, ClusterCommandFailed

# one line per (partition, node); names of either cannot hold "|"
SINFO_FORMAT = "%P|%a|%l|%N|%T|%c|%m"
SINFO_ARGV = ("sinfo", "--noheader", "--Node", "--format", SINFO_FORMAT)

Runner = Callable[[Sequence[str]], CommandResult]


def _time_limit_seconds(value: str) -> int | None:
    if value in ("infinite", "UNLIMITED", "n/a", ""):
        return None
    seconds = parse_duration(value)
    return int(seconds) if seconds is not None else None


def _int_or_none(value: str) -> int | None:
    try:
        return int(value.rstrip("+"))
    except ValueError:
        return None


def parse_sinfo(text: str) -> tuple[list[dict], list[dict]]:
    """Partitions (with node counts by state) and nodes from ``sinfo --Node --format SINFO_FORMAT``."""
    partitions: dict[str, dict] = {}
    nodes: dict[str, dict] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) != 7:
            continue
        partition, avail, limit, node, state, cpus, memory = (f.strip() for f in fields)
        default = partition.endswith("*")
        partition = partition.rstrip("*")
        # a trailing * on a node state means "not responding"; keep the state's name plain
        plain_state = state.rstrip("*~#!%$@^-+")
        entry = partitions.setdefault(
            partition,
            {
                "name": partition,
                "default": default,
                "state": avail,
                "time_limit_seconds": _time_limit_seconds(limit),
                "cpus": 0,
                "node_count": 0,
                "nodes_by_state": {},
            },
        )
        entry["node_count"] += 1
        entry["cpus"] += _int_or_none(cpus) or 0
        entry["nodes_by_state"][plain_state] = entry["nodes_by_state"].get(plain_state, 0) + 1
        node_entry = nodes.setdefault(
            node,
            {
                "name": node,
                "state": plain_state,
                "responding": not state.endswith("*"),
                "cpus": _int_or_none(cpus),
                "memory_mb": _int_or_none(memory),
                "partitions": [],
            },
        )
        node_entry["partitions"].append(partition)
    return list(partitions.values()), sorted(nodes.values(), key=lambda n: n["name"])


def cluster_details(cluster: Cluster, run: Runner) -> dict:
    """Partitions and nodes as the caller sees them, read with sinfo on the cluster."""
    result = run(list(SINFO_ARGV))
    if not result.ok:
        raise ClusterCommandFailed(f"sinfo failed on cluster {cluster.name}: {result.error_text()[:500]}")
    partitions, nodes = parse_sinfo(result.text())
    return {"partitions": partitions, "nodes": nodes}


@dataclass(frozen=True)
class Snapshot:
    """One read of a cluster's details for one user: the answer and when its read began."""

    value: dict
    # wall-clock time the read began (the answer's ``details_as_of``): the cluster's state is at
    # least this recent, so a portal never takes an answer for fresher than it is
    as_of: datetime
    # the same moment on the monotonic clock, from which the snapshot's age is counted
    taken: float


class _Flight:
    """One read in progress: the requests that missed the same key meanwhile wait for its outcome."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.snapshot: Snapshot | None = None
        self.error: BaseException | None = None


class DetailsCache:
    """Recent details of each (cluster, user), so that portals polling GET /clusters/{cluster} do not
    each cost slurmctld a sinfo: two RPCs (sdiag on the bed: ten of our sinfo added exactly ten
    REQUEST_PARTITION_INFO and ten REQUEST_NODE_INFO, no federation lookup, so ``--local`` saves none).

    sinfo(1), PERFORMANCE (https://slurm.schedmd.com/sinfo.html): "Do not run sinfo or other Slurm
    client commands that send remote procedure calls to slurmctld from loops in shell scripts or other
    programs. Ensure that programs limit calls to sinfo to the minimum necessary" (many at once can
    degrade slurmctld, "possibly resulting in a denial of service"). With a snapshot kept ``ttl``
    seconds, this service sends at most one sinfo per user, cluster and ``ttl`` (per process), however
    often its clients poll.

    Keyed per user, never shared: what sinfo shows depends on who asks. slurm.conf(5) of the bed's
    Slurm 22.05: a partition with ``Hidden=YES`` "will by default not be reported by the Slurm APIs or
    commands", and "partitions that a user lacks access to by virtue of the AllowGroups parameter will
    also be hidden by default" (sinfo(1) ``--all`` would show them; we run sinfo without it);
    ``PrivateData=nodes`` / ``partitions`` "prevents users from viewing node / partition state
    information" while "SlurmUser and root can always view all information". The file systems in the
    answer are resolved per user too ($HOME, $GROUP). (https://slurm.schedmd.com/slurm.conf.html)

    Concurrent misses of one key make one read (single-flight): the first runs it, the others wait
    for its outcome (at most ``wait`` seconds, then RemoteTimeout) and share its snapshot or a copy of
    its error. A failed read is never kept: the next request reads again. Bounded: at most
    ``max_entries`` snapshots and ``MAX_NODES`` nodes in all, the least recently used dropped first;
    expired snapshots are dropped whenever a new one is kept. A ``ttl`` of 0 reads every time.
    """

    # about 0.6 KiB of Python objects per node (tracemalloc over parse_sinfo of 10,000 nodes, a
    # quarter in two partitions): 30 MiB at most; a larger cluster's answer is served, not kept
    MAX_NODES = 50_000

    def __init__(
        self,
        ttls: dict[str, float],
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._ttls = dict(ttls)
        self.max_entries = max_entries
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[tuple[str, str], Snapshot] = OrderedDict()
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._nodes = 0

    def ttl(self, cluster: str) -> float:
        """Seconds a snapshot of ``cluster`` serves (hcc.cluster.<name>.detail_cache)."""
        return self._ttls.get(cluster, 0.0)

    def __len__(self) -> int:
        return len(self._snapshots)

    def get(self, cluster: str, user: str, read: Callable[[], dict], wait: float) -> Snapshot:
        """``user``'s details of ``cluster``: a snapshot younger than the cluster's ttl, or ``read()``."""
        ttl = self.ttl(cluster)
        if ttl <= 0:
            return self._read(read)
        key = (cluster, user)
        with self._lock:
            kept = self._snapshots.get(key)
            if kept is not None and 0 <= self._clock() - kept.taken < ttl:
                self._snapshots.move_to_end(key)
                return kept
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leading:
            return self._follow(cluster, flight, wait)
        try:
            snapshot = self._read(read)
        except BaseException as exc:
            flight.error = exc
            with self._lock:
                del self._flights[key]
            raise
        else:
            flight.snapshot = snapshot
            with self._lock:
                # kept before the flight ends, so that no request in between reads again
                self._keep(key, snapshot)
                del self._flights[key]
            return snapshot
        finally:
            flight.done.set()

    def _read(self, read: Callable[[], dict]) -> Snapshot:
        # the moment before the command starts: the answer is no older than this
        as_of, taken = self._now(), self._clock()
        return Snapshot(read(), as_of, taken)

    @staticmethod
    def _follow(cluster: str, flight: _Flight, wait: float) -> Snapshot:
        if not flight.done.wait(wait):
            raise RemoteTimeout(cluster, f"the cluster's details were not read within {wait:g} s")
        if flight.error is not None:
            # a copy each: one exception object raised in several threads would share a traceback
            raise copy.copy(flight.error)
        return cast(Snapshot, flight.snapshot)

    def _keep(self, key: tuple[str, str], snapshot: Snapshot) -> None:
        nodes = len(snapshot.value.get("nodes", ()))
        self._drop(key)
        now = self._clock()
        for old in [k for k, s in self._snapshots.items() if now - s.taken >= self.ttl(k[0])]:
            self._drop(old)
        if nodes > self.MAX_NODES or self.max_entries < 1:
            return
        self._snapshots[key] = snapshot
        self._nodes += nodes
        while len(self._snapshots) > self.max_entries or self._nodes > self.MAX_NODES:
            self._drop(next(iter(self._snapshots)))

    def _drop(self, key: tuple[str, str]) -> None:
        gone = self._snapshots.pop(key, None)
        if gone is not None:
            self._nodes -= len(gone.value.get("nodes", ()))
