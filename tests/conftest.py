"""Fixtures that start from the real test bed: its endpoints.json names every server and credential."""

import json
import os
from pathlib import Path

import pytest

ENDPOINTS = Path(os.environ.get("HCC_TESTBED_ENDPOINTS", "/var/lib/hcc-testbed/endpoints.json"))
START_HINT = "bash scripts/testbed/install.sh && bash scripts/testbed/up.sh"


def pytest_configure(config):
    # Stop at once, loudly, when the bed is missing: a suite that silently skipped every real
    # test would pass while testing nothing.
    if not ENDPOINTS.is_file():
        pytest.exit(f"the test bed is not up ({ENDPOINTS} is missing); start it with: {START_HINT}", returncode=3)


@pytest.fixture(scope="session")
def endpoints() -> dict:
    return json.loads(ENDPOINTS.read_text())


@pytest.fixture(scope="session")
def users(endpoints) -> dict:
    """Test users by name: name, uid, password, cn, locked, dn, key."""
    return {u["name"]: u for u in endpoints["users"]}


@pytest.fixture(scope="session")
def clusters(endpoints) -> dict:
    """Test clusters by name: ssh_host, ssh_port, known_hosts, slurm_conf, node, partition, ..."""
    return endpoints["clusters"]
