"""The README's settings table names every setting, and its defaults are the dataclasses' defaults."""

import dataclasses
import re
from pathlib import Path

import pytest

from hcc_federation import settings as hs

README = Path(__file__).resolve().parents[2] / "README.md"
SECTIONS = {
    "database": hs.DatabaseSettings,
    "ldap": hs.LdapSettings,
    "auth": hs.AuthSettings,
    "api": hs.ApiSettings,
    "ssh": hs.SshSettings,
    "files": hs.FilesSettings,
    "jobs": hs.JobsSettings,
    "legacy": hs.LegacySettings,
    "operations": hs.OperationsSettings,
}
UNITS = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
REQUIRED = object()


def _cells(line: str) -> list[str]:
    # split on the table's pipes, not on a pipe escaped inside a cell (`\|`)
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _defaults(cell: str) -> list[str]:
    # backticked values may hold commas; the others are separated by ", "
    return [m.group(0) for m in re.finditer(r"`[^`]*`|[^,`]+", cell) if m.group(0).strip()]


def readme_table() -> dict[str, str]:
    """{full key: its default as the README writes it}, `.key` continuing the row's first key."""
    lines = README.read_text().splitlines()
    start = lines.index("| key | default | meaning |")
    table = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        keys_cell, default_cell, _ = _cells(line)
        keys = re.findall(r"`([^`]+)`", keys_cell)
        prefix = keys[0].rsplit(".", 1)[0]
        full = [k if k.startswith("hcc.") else prefix + k for k in keys]
        values = [v.strip() for v in _defaults(default_cell)]
        assert len(values) == len(full), f"README row {keys_cell}: {len(full)} keys, {len(values)} defaults"
        table.update(zip(full, values, strict=True))
    return table


def field_of(key: str) -> tuple[type, str]:
    parts = key.split(".")
    if parts[1] == "cluster":
        assert parts[2] == "<name>", key
        return hs.ClusterSettings, parts[3]
    return SECTIONS[parts[1]], parts[2]


def dataclass_default(cls: type, name: str):
    try:
        return hs.default(cls, name)
    except hs.SettingsError:
        return REQUIRED


def readme_value(text: str):
    if text == "required":
        return REQUIRED
    if text == "none":
        return None
    if text in ("true", "false"):
        return text == "true"
    if text.startswith("`"):
        return text.strip("`")
    number, _, unit = text.partition(" ")
    return float(number) * UNITS.get(unit, 1) if unit in UNITS or not unit else text


def as_documented(value):
    """A dataclass default in the README's terms: empty is none, NAME=value pairs as written in the ini."""
    if value in ((), "") or value is None:
        return None
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return "-".join(map(str, value))  # a port range, low-high
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return " ".join(value)  # words, as aslist reads them
    if isinstance(value, tuple):
        return " ".join(f"{k}={v}" for k, v in value)
    if isinstance(value, bool) or value is REQUIRED:
        return value
    if isinstance(value, int | float):
        return float(value)
    return value


TABLE = readme_table()


@pytest.mark.parametrize("key", sorted(k for k in TABLE if k != "hcc.clusters"))
def test_readme_default_is_the_dataclass_default(key):
    cls, name = field_of(key)
    documented = TABLE[key]
    default = dataclass_default(cls, name)
    if key == "hcc.cluster.<name>.description":
        # the only default that depends on another value: empty in the dataclass, the name once parsed
        assert (documented, default) == ("the name", "")
        return
    assert readme_value(documented) == as_documented(default), f"README says {documented!r} for {key}"


def test_every_setting_is_in_the_readme():
    fields_ = {f"hcc.{sect}.{f.name}" for sect, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    fields_ |= {f"hcc.cluster.<name>.{f.name}" for f in dataclasses.fields(hs.ClusterSettings)}
    fields_ -= {"hcc.cluster.<name>.name"}  # the name is the one in hcc.clusters
    assert fields_ == set(TABLE) - {"hcc.clusters"}


def test_every_cluster_key_is_a_setting():
    documented = {k.rsplit(".", 1)[1] for k in TABLE if k.startswith("hcc.cluster.<name>.")}
    assert documented == hs.CLUSTER_KEYS
