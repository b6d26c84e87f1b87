"""hcc.files.* settings: upload limit, link lifetime and tree timeout, with defaults and named errors."""

import pytest

from hcc_federation.settings import FilesSettings, SettingsError, parse_settings
from tests.helpers import BASE_SETTINGS


def test_defaults():
    files = parse_settings(BASE_SETTINGS, {}).files
    assert files == FilesSettings(max_upload_bytes=10 * 1024**3, link_ttl=3600, tree_timeout=600)


def test_values_are_read():
    files = parse_settings(
        {
            **BASE_SETTINGS,
            "hcc.files.max_upload_bytes": "2048",
            "hcc.files.link_ttl": " 60 ",
            "hcc.files.tree_timeout": "7200",
        },
        {},
    ).files
    assert (files.max_upload_bytes, files.link_ttl, files.tree_timeout) == (2048, 60, 7200)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("hcc.files.max_upload_bytes", "10G", "hcc.files.max_upload_bytes must be an integer"),
        ("hcc.files.max_upload_bytes", "0", "hcc.files.max_upload_bytes must be at least 1"),
        ("hcc.files.link_ttl", "1h", "hcc.files.link_ttl must be an integer"),
        ("hcc.files.link_ttl", "-5", "hcc.files.link_ttl must be at least 1"),
        ("hcc.files.tree_timeout", "0", "hcc.files.tree_timeout must be at least 1"),
    ],
)
def test_bad_values_name_their_key(key, value, message):
    with pytest.raises(SettingsError, match=message):
        parse_settings({**BASE_SETTINGS, key: value}, {})
