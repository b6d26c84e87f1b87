"""A cluster's partitions and nodes as the caller sees them: sinfo and its parser."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..jobs.parsers import parse_duration
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
