"""The legacy portal's texts from command output, as the old backend cut them (pure)."""

from __future__ import annotations

import re

# srun --label: "<task>: " before each line, the number right-aligned when there are ten tasks or more
_LABELLED = re.compile(r"^\s*(\d+): ?(.*)$")


def listing_text(stdout: str) -> str:
    """``ls`` output as the old backend returned it: stripped, so that the portal's split on "\\n"
    makes no empty row after the last entry."""
    return stdout.strip()


def sacct_lines(stdout: str) -> list[str]:
    """One string per job, each as ``sacct -p`` prints it (``|`` after every field); none for no jobs.

    (The old backend answered ``[""]`` for no jobs, a row of nothing in the portal's table.)
    """
    text = stdout.strip()
    return text.split("\n") if text else []


def sacct_values(stdout: str) -> list[str] | None:
    """The fields of the first ``sacct -p`` line, without the empty one after its last ``|``."""
    line = stdout.strip().split("\n", 1)[0]
    if not line:
        return None
    values = line.split("|")
    if values[-1] == "":
        values.pop()
    return values


def top_by_node(stdout: str) -> dict[str, str]:
    """``{node: top text}`` from the labelled output of ``commands.top_argv``: each task's first line
    is its node's name, the rest is top's frame (stripped, as the old backend stripped it)."""
    tasks: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        match = _LABELLED.match(line)
        if match:
            tasks.setdefault(match.group(1), []).append(match.group(2))
    nodes = {}
    for lines in tasks.values():
        node = lines[0].strip()
        if node:
            nodes[node] = "\n".join(lines[1:]).strip()
    return nodes
