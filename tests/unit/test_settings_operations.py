"""hcc.operations.* and the clusters' transfer keys: defaults and named errors."""

import pytest

from hcc_federation.settings import OperationsSettings, SettingsError, parse_settings
from tests.helpers import BASE_SETTINGS

CLUSTER = {
    **BASE_SETTINGS,
    "hcc.clusters": "alpha",
    "hcc.cluster.alpha.host": "127.0.0.1",
    "hcc.cluster.alpha.known_hosts": "/etc/ssh/ssh_known_hosts",
}


def test_defaults():
    settings = parse_settings(CLUSTER, {})
    assert settings.operations == OperationsSettings(
        retention_days=7, sync_max_bytes=1024**3, sync_max_files=10000, certificate_ttl=900, stale_after=60
    )
    alpha = settings.clusters[0]
    assert (alpha.transfer_partition, alpha.transfer_time_limit) == ("", 1440)


def test_values_are_read():
    settings = parse_settings(
        {
            **CLUSTER,
            "hcc.cluster.alpha.transfer_partition": " transfer ",
            "hcc.cluster.alpha.transfer_time_limit": "90",
            "hcc.operations.sync_max_files": "0",
        },
        {},
    )
    assert (settings.clusters[0].transfer_partition, settings.clusters[0].transfer_time_limit) == (
        "transfer",
        90,
    )
    assert settings.operations.sync_max_files == 0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "hcc.cluster.alpha.transfer_partition",
            "a b;c",
            "transfer_partition: 'a b;c' is not a partition name",
        ),
        ("hcc.cluster.alpha.transfer_partition", "--x=$(y)", "is not a partition name"),
        ("hcc.cluster.alpha.transfer_time_limit", "0", "transfer_time_limit must be at least 1"),
        ("hcc.operations.retention_days", "0", "hcc.operations.retention_days must be at least 1"),
        ("hcc.operations.sync_max_bytes", "1G", "hcc.operations.sync_max_bytes must be an integer"),
        ("hcc.operations.certificate_ttl", "30", "hcc.operations.certificate_ttl must be at least 60"),
        ("hcc.operations.stale_after", "1", "hcc.operations.stale_after must be at least 5"),
    ],
)
def test_bad_values_name_their_key(key, value, message):
    with pytest.raises(
        SettingsError, match=message.replace("$", r"\$").replace("(", r"\(").replace(")", r"\)")
    ):
        parse_settings({**CLUSTER, key: value}, {})
