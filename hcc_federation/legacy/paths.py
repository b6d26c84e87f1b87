"""The legacy portal's paths: absolute, or starting with a named file system ($HOME, $WORK...) (pure)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from ..errors import InvalidArgument
from ..files.paths import CheckedPath, validate_path

# "$WORK" or "${WORK}", then the end or a "/": the old backend's shell expanded these; we look them up
_NAMED = re.compile(r"^\$(?:\{(\w+)\}|(\w+))(?=/|$)")


def resolve_client_path(
    text: object, filesystems: Callable[[], Mapping[str, str]], *, name: str = "path"
) -> CheckedPath:
    """The cluster path a portal path means: ``$NAME/rest`` through the cluster's named file systems
    (``filesystems()`` is called only then: resolving ``$HOME`` costs a round trip), an absolute path
    as it is. Only a leading name is looked up; a ``$`` anywhere else is a literal character, and
    nothing goes through a shell. Then the rules of ``files.validate_path`` apply.
    """
    if not isinstance(text, str) or not text:
        raise InvalidArgument("a path is required", field=name)
    match = _NAMED.match(text)
    if match:
        fs_name = match.group(1) or match.group(2)
        known = filesystems()
        if fs_name not in known:
            names = ", ".join(f"${n}" for n in known) or "none"
            raise InvalidArgument(
                f"unknown file system ${fs_name} on this cluster (it has: {names})", field=name
            )
        text = known[fs_name] + text[match.end() :]
    elif not text.startswith("/"):
        raise InvalidArgument(
            "the path must be absolute or start with a file system name such as $HOME", field=name
        )
    return validate_path(text, name=name)


def client_name(given: str) -> str:
    """The ``name`` the portal shows for a path it gave: its last component, as the old backend's
    ``os.path.basename`` gave it ("$HOME" for "$HOME")."""
    return given.rsplit("/", 1)[-1]
