"""The one table from failure types to HTTP: every domain error is in it, and none restates HTTP."""

import importlib
import pkgutil
import re

import pytest

import hcc_federation
from hcc_federation.api.error_map import ERROR_MAP, HTTP_ERRORS, all_codes, mapping_for
from hcc_federation.api.openapi import ERROR_ENVELOPE
from hcc_federation.errors import DomainError, InvalidArgument


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= _all_subclasses(sub)
    return found


def _domain_errors() -> list[type]:
    # every module, so that a new error class anywhere in the package is seen
    for module in pkgutil.walk_packages(hcc_federation.__path__, "hcc_federation."):
        if module.name != "hcc_federation.wsgi":  # it builds the application from the environment
            importlib.import_module(module.name)
    classes = {c for c in _all_subclasses(DomainError) if c.__module__.startswith("hcc_federation.")}
    return sorted(classes, key=lambda c: (c.__module__, c.__qualname__))


DOMAIN_ERRORS = _domain_errors()


def test_the_walk_finds_the_errors_of_every_feature():
    modules = {c.__module__.split(".")[1] for c in DOMAIN_ERRORS}
    assert {"auth", "bulkhead", "clusters", "files", "jobs", "remote"} <= modules
    assert len(DOMAIN_ERRORS) > 40


@pytest.mark.parametrize("error", DOMAIN_ERRORS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_domain_error_maps_to_a_status_and_a_code_of_its_own_kind(error):
    row = mapping_for(error.__new__(error))
    assert row is not None
    assert 400 <= row.status <= 599
    assert re.fullmatch(r"[a-z][a-z0-9_]*", row.code)
    # the catch-all row is for a bug (a class nobody mapped), never for a kind of failure
    assert row is not ERROR_MAP[DomainError], f"{error.__qualname__} has no row, nor a listed parent"


@pytest.mark.parametrize("error", DOMAIN_ERRORS, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_no_domain_error_speaks_http(error):
    # the status, the envelope's location and the headers are the API layer's choice
    for attribute in ("status", "location", "headers", "code"):
        assert not hasattr(error, attribute), f"{error.__qualname__}.{attribute}"
    assert isinstance(error.field, str) and error.field


def test_a_subclass_maps_like_its_parent_unless_listed():
    class Unlisted(InvalidArgument):
        pass

    assert mapping_for(Unlisted("x")) is ERROR_MAP[InvalidArgument]
    assert mapping_for(ValueError("x")) is None


def test_every_code_is_documented_in_the_openapi_error_entry():
    code = ERROR_ENVELOPE["properties"]["errors"]["items"]["properties"]["code"]
    assert set(code["enum"]) == set(all_codes())
    for row in ERROR_MAP.values():
        assert f"`{row.code}`" in code["description"]
    for row in HTTP_ERRORS.values():
        assert row.code in code["enum"]
