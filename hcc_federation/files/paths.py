"""Path rules: what a path given by a caller may be, and the named file systems of a cluster."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping

from hcc_federation.errors import InvalidArgument

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


# ----------------------------------------------------------------------------------------- path rules


class CheckedPath(str):
    """A path that passed ``validate_path``: the views check a caller's path once, and the domain
    functions they hand it to (which also take paths from scripts and tests) need not check it again."""

    __slots__ = ()


def validate_path(path: object, *, name: str = "path") -> str:
    """Return ``path`` normalized (a ``CheckedPath``), or raise ``InvalidArgument`` (``name``).

    Absolute, no NUL, at most 4096 bytes of UTF-8 and 255 bytes per component. ``..`` is resolved
    lexically: it grants nothing, since every operation runs with the user's own Unix rights.
    A ``CheckedPath`` is returned as it is.
    """
    if isinstance(path, CheckedPath):
        return path
    return check_path(path, name=name)


def check_path(path: object, *, name: str = "path") -> CheckedPath:
    """The rules of ``validate_path``, applied (use ``validate_path``, which skips a checked path)."""
    if not isinstance(path, str) or not path:
        raise InvalidArgument("a path is required", field=name)
    if "\x00" in path:
        raise InvalidArgument("a path cannot contain a NUL character", field=name)
    if not path.startswith("/"):
        raise InvalidArgument(f"the path must be absolute: {path}", field=name)
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument("the path is not valid UTF-8", field=name) from None
    if len(raw) > MAX_PATH_BYTES:
        raise InvalidArgument(f"the path is longer than {MAX_PATH_BYTES} bytes", field=name)
    normalized = posixpath.normpath(path)
    # POSIX lets normpath keep a leading "//" (implementation-defined); on Linux it is just "/".
    if normalized.startswith("//"):
        normalized = "/" + normalized.lstrip("/")
    for component in normalized.split("/"):
        if len(component.encode("utf-8")) > MAX_NAME_BYTES:
            raise InvalidArgument(f"a path component is longer than {MAX_NAME_BYTES} bytes", field=name)
    return CheckedPath(normalized)


def resolve_filesystems(
    templates: Mapping[str, str], *, user: str, home: str, group: str
) -> list[dict[str, str]]:
    """Named file systems of a cluster for one user, e.g. ``{"WORK": "/work/$GROUP/$USER"}``.

    ``$HOME``, ``$USER`` and ``$GROUP`` (or ``${...}``) are substituted; any other ``$`` word is a
    configuration error (``ValueError``), as is a result that is not a valid absolute path. Order is the
    configuration's.
    """
    values = {"HOME": home, "USER": user, "GROUP": group}

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1) or match.group(2)
        if key not in values:
            raise ValueError(f"unknown variable ${key} in file system template {template!r}")
        return values[key]

    result = []
    for fs_name, template in templates.items():
        path = re.sub(r"\$(?:\{(\w+)\}|(\w+))", substitute, template)
        try:
            path = validate_path(path)
        except InvalidArgument as exc:
            raise ValueError(
                f"file system {fs_name!r} resolves to an invalid path: {exc.description}"
            ) from None
        result.append({"name": fs_name, "path": path})
    return result
