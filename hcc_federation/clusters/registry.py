"""The cluster registry: configured clusters, their SSH endpoints and status probes."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..bulkhead import Bulkhead
from ..errors import DomainError
from ..fanout import FanOut
from ..remote import CertificateIdentity, ClusterEndpoint, ConnectionPool, PasswordIdentity
from ..settings import ClusterSettings, Settings, SshSettings


class UnknownCluster(DomainError):
    """No cluster of that name is configured."""

    field = "cluster"


class MissingCredential(DomainError):
    """The session holds no credential for this cluster's identity mode (e.g. the mode changed)."""

    field = "Authorization"


class ClusterCommandFailed(DomainError):
    """A command the service runs on a cluster for itself (not for a job) failed."""

    field = "cluster"


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


class ClusterRegistry:
    """Every configured cluster by name, and their recently probed status."""

    def __init__(
        self, clusters: Sequence[ClusterSettings], ssh: SshSettings, pool: ConnectionPool, fanout: FanOut
    ):
        self._clusters = {c.name: Cluster(c, ClusterEndpoint.from_settings(c)) for c in clusters}
        self._bulkheads = {
            c.name: Bulkhead(c.name, c.max_concurrent_requests, c.queue_timeout, max_wait=c.command_timeout)
            for c in clusters
        }
        self.pool = pool
        self.status_ttl = ssh.status_ttl
        self._status: dict[str, tuple[float, ClusterStatus]] = {}
        self._lock = threading.Lock()
        # probes of all clusters run at once (on the shared fan-out); a slow cluster costs one
        # timeout, not the sum
        self._fanout = fanout

    @classmethod
    def from_settings(cls, settings: Settings, pool: ConnectionPool, fanout: FanOut) -> ClusterRegistry:
        """Every hcc.cluster.<name> with hcc.ssh.status_ttl, on the service's pool and fan-out."""
        return cls(settings.clusters, settings.ssh, pool, fanout)

    def __iter__(self):
        return iter(self._clusters.values())

    def __len__(self) -> int:
        return len(self._clusters)

    def get(self, name: str) -> Cluster:
        cluster = self._clusters.get(name)
        if cluster is None:
            raise UnknownCluster(f"no cluster named {name[:64]!r}")
        return cluster

    def bulkhead(self, name: str) -> Bulkhead:
        """The cluster's share of concurrent requests (see access.hold_cluster)."""
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

    def status_as_of(self, name: str, moment: datetime) -> ClusterStatus:
        """The cluster's last known status if it was found at or after ``moment`` (a command that ran
        then, e.g. the sinfo of a kept answer); else "up" at ``moment``. Never probes."""
        with self._lock:
            known = self._status.get(name)
        if known is not None and known[1].checked_at >= moment:
            return known[1]
        return ClusterStatus("up", "a command ran", moment)

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
                    pending[cluster.name] = self._fanout.submit(self._probe, cluster)
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
