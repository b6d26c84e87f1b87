"""The cluster registry: configured clusters, their SSH endpoints, status probes and sinfo."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from .bulkhead import Bulkhead
from .errors import NotFound, ServiceError
from .jobs.parsers import parse_duration
from .remote import CertificateIdentity, ClusterEndpoint, ConnectionPool, PasswordIdentity
from .remote.result import CommandResult
from .settings import ClusterSettings, SshSettings

# one line per (partition, node); names of either cannot hold "|"
SINFO_FORMAT = "%P|%a|%l|%N|%T|%c|%m"
SINFO_ARGV = ("sinfo", "--noheader", "--Node", "--format", SINFO_FORMAT)

Runner = Callable[[Sequence[str]], CommandResult]


class UnknownCluster(NotFound):
    name = "cluster"


class MissingCredential(ServiceError):
    """The session holds no credential for this cluster's identity mode (e.g. the mode changed)."""

    status = 401
    location = "header"
    name = "Authorization"


class ClusterCommandFailed(ServiceError):
    status = 502
    location = "path"
    name = "cluster"


@dataclass(frozen=True)
class Cluster:
    settings: ClusterSettings
    endpoint: ClusterEndpoint

    @property
    def name(self) -> str:
        return self.settings.name


@dataclass(frozen=True)
class ClusterStatus:
    status: str  # up, down, hostkey_mismatch
    detail: str
    checked_at: datetime


def endpoint_for(settings: ClusterSettings) -> ClusterEndpoint:
    return ClusterEndpoint(
        name=settings.name,
        host=settings.host,
        port=settings.port,
        known_hosts=settings.known_hosts,
        connect_timeout=settings.connect_timeout,
        command_timeout=settings.command_timeout,
        output_limit=settings.output_limit,
        max_sessions=settings.max_sessions,
        keepalive=settings.keepalive,
        env=dict(settings.env),
        command_prefix=settings.command_prefix,
    )


class ClusterRegistry:
    """Every configured cluster by name, and their recently probed status."""

    def __init__(self, clusters: Sequence[ClusterSettings], ssh: SshSettings, pool: ConnectionPool):
        self._clusters = {c.name: Cluster(c, endpoint_for(c)) for c in clusters}
        self._bulkheads = {
            c.name: Bulkhead(c.name, c.max_concurrent_requests, c.queue_timeout) for c in clusters
        }
        self.pool = pool
        self.status_ttl = ssh.status_ttl
        self._status: dict[str, tuple[float, ClusterStatus]] = {}
        self._lock = threading.Lock()
        # probes of all clusters run at once; a slow cluster costs one timeout, not the sum
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, min(16, len(self._clusters))), thread_name_prefix="probe"
        )

    def __iter__(self):
        return iter(self._clusters.values())

    def __len__(self) -> int:
        return len(self._clusters)

    def get(self, name: str) -> Cluster:
        cluster = self._clusters.get(name)
        if cluster is None:
            raise UnknownCluster(f"no cluster named {name[:64]!r}", location="path")
        return cluster

    def bulkhead(self, name: str) -> Bulkhead:
        """The cluster's share of concurrent requests (see routing.hold_cluster)."""
        self.get(name)
        return self._bulkheads[name]

    def uses(self, identity_mode: str) -> bool:
        return any(c.settings.identity == identity_mode for c in self)

    def _probe(self, cluster: Cluster) -> ClusterStatus:
        result = self.pool.probe(cluster.endpoint, timeout=min(3.0, cluster.settings.connect_timeout))
        return ClusterStatus(result.status, result.detail, datetime.now(UTC))

    def record_up(self, name: str) -> ClusterStatus:
        """A command just ran there over a verified connection: that is more than a probe shows,
        so it becomes the cluster's status without a probe of its own."""
        status = ClusterStatus("up", "a command ran", datetime.now(UTC))
        with self._lock:
            self._status[name] = (time.monotonic(), status)
        return status

    def statuses(self, names: Sequence[str] | None = None) -> dict[str, ClusterStatus]:
        """Each cluster's status, probed (TCP + verified host key, no login) unless recently known."""
        wanted = [self.get(n) for n in names] if names is not None else list(self)
        now = time.monotonic()
        out: dict[str, ClusterStatus] = {}
        pending = {}
        with self._lock:
            for cluster in wanted:
                cached = self._status.get(cluster.name)
                if cached and now - cached[0] < self.status_ttl:
                    out[cluster.name] = cached[1]
                else:
                    pending[cluster.name] = self._executor.submit(self._probe, cluster)
        for name, future in pending.items():
            status = future.result()
            out[name] = status
            with self._lock:
                self._status[name] = (time.monotonic(), status)
        return {c.name: out[c.name] for c in wanted}


def identity_for(cluster: Cluster, username: str, credential: dict | None):
    """The SSH identity a session's sealed credential gives for this cluster's mode."""
    credential = credential or {}
    if cluster.settings.identity == "certificate":
        if "ssh_key" not in credential or "ssh_cert" not in credential:
            raise MissingCredential(
                f"this session holds no certificate for cluster {cluster.name}; log in again"
            )
        return CertificateIdentity(username, credential["ssh_key"].encode(), credential["ssh_cert"])
    if "password" not in credential:
        raise MissingCredential(f"this session holds no password for cluster {cluster.name}; log in again")
    return PasswordIdentity(username, credential["password"])


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
