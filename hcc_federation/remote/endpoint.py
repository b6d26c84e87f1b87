"""Where and how to reach one cluster's login node over SSH."""

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from hcc_federation.settings import ClusterSettings, default


def _d(name: str):
    # an endpoint built by hand (tests, scripts) has the defaults of hcc.cluster.<name>.*, written there
    return default(ClusterSettings, name)


# Only names a POSIX shell could also export: anything else would reach `env` as a command or an option.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class ClusterEndpoint:
    """One cluster's SSH endpoint and the limits every call to it runs under.

    ``env`` is exported for each command through ``env K=V ... argv`` in the command line rather than
    through SSH environment requests, which sshd drops unless its ``AcceptEnv`` lists the names.
    ``command_prefix`` is an admin-configured, trusted shell snippet (``module load slurm``) run before
    each command; it is the only part of a command line that is not quoted.
    """

    name: str
    host: str
    port: int = _d("port")
    # required and keyword-only: a path to the OpenSSH known_hosts file that pins this host's keys
    known_hosts: str = field(kw_only=True)
    connect_timeout: float = _d("connect_timeout")
    command_timeout: float = _d("command_timeout")
    output_limit: int = _d("output_limit")
    # channels per transport, kept below sshd's default MaxSessions (10), which would answer "open failed"
    max_sessions: int = _d("max_sessions")
    keepalive: int = _d("keepalive")
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    command_prefix: str = _d("command_prefix")

    def __post_init__(self) -> None:
        if not self.name or not self.host:
            raise ValueError("a cluster endpoint needs a name and a host")
        if not self.known_hosts:
            # without it every host key would be unknown and rejected: say so at start-up instead
            raise ValueError(f"cluster {self.name!r}: known_hosts (a path) is required")
        if not 0 < self.port < 65536:
            raise ValueError(f"cluster {self.name!r}: bad port {self.port}")
        if self.connect_timeout <= 0 or self.command_timeout <= 0:
            raise ValueError(f"cluster {self.name!r}: timeouts must be positive")
        if self.output_limit <= 0 or self.max_sessions <= 0 or self.keepalive < 0:
            raise ValueError(f"cluster {self.name!r}: output_limit and max_sessions must be positive")
        for key, value in self.env.items():
            if not _ENV_NAME.match(key) or "\0" in value:
                raise ValueError(f"cluster {self.name!r}: bad environment variable {key!r}")
        # frozen all the way down: a shared endpoint must not change under a running command
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))

    @classmethod
    def from_settings(cls, settings: ClusterSettings) -> "ClusterEndpoint":
        """The endpoint of one hcc.cluster.<name>."""
        return cls(
            name=settings.name,
            host=settings.host,
            port=settings.port,
            known_hosts=settings.known_hosts,
            connect_timeout=settings.connect_timeout,
            command_timeout=settings.command_timeout,
            output_limit=settings.output_limit,
            max_sessions=settings.max_sessions,
            keepalive=settings.keepalive,
            env=dict(settings.env),
            command_prefix=settings.command_prefix,
        )

    @property
    def host_key_name(self) -> str:
        """The name this endpoint has in a known_hosts file (``[host]:port`` unless port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def command_line(self, argv: Sequence[str]) -> str:
        """The exact string sent to sshd for ``argv``: every argument arrives literally."""
        argv = list(argv)
        if not argv:
            raise ValueError("empty argv")
        for arg in argv:
            if not isinstance(arg, str):
                raise TypeError(f"argv elements must be str, not {type(arg).__name__}")
            if "\0" in arg:
                # a C string ends at NUL: the remote side would see a truncated argument
                raise ValueError("NUL byte in argv")
        if self.env:
            if "=" in argv[0] or argv[0].startswith("-"):
                # `env` would take it as another assignment or as an option of its own
                raise ValueError(f"command name {argv[0]!r} cannot follow env")
            argv = ["env", *(f"{k}={v}" for k, v in self.env.items()), *argv]
        command = shlex.join(argv)
        if self.command_prefix:
            # exec: the command replaces the shell that ran the prefix, so the TERM that a
            # timeout sends to sshd's child reaches the command itself, not only its shell
            # (bash 5.2 does this by itself for the last command of -c; other shells may not)
            return f"{self.command_prefix} && exec {command}"
        return command
