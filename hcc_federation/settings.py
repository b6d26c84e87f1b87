"""The hcc.* settings, parsed and validated once at start-up into frozen dataclasses."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields

TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0", ""}

# Secrets and the database URL may come from the environment, which wins over the ini, so that
# production.ini holds no secret (Warehouse does the same with DATABASE_URL and friends).
ENV_OVERRIDES = {
    "hcc.database.url": "HCC_DATABASE_URL",
    "hcc.auth.secret": "HCC_AUTH_SECRET",
    "hcc.ldap.bind_password": "HCC_LDAP_BIND_PASSWORD",
}


class SettingsError(ValueError):
    """A missing or malformed setting; the message names the key."""


class _Reader:
    """Typed access to the raw settings that names the key in every error."""

    def __init__(self, raw: Mapping[str, str], environ: Mapping[str, str]):
        self.raw = dict(raw)
        for key, var in ENV_OVERRIDES.items():
            if environ.get(var):
                self.raw[key] = environ[var]

    def str(self, key: str, default: str | None = None) -> str:
        value = self.raw.get(key)
        value = value.strip() if isinstance(value, str) else value
        if value in (None, ""):
            if default is None:
                hint = f" (or the environment variable {ENV_OVERRIDES[key]})" if key in ENV_OVERRIDES else ""
                raise SettingsError(f"setting {key} is required{hint}")
            return default
        return value

    def optional(self, key: str) -> str | None:
        value = (self.raw.get(key) or "").strip()
        return value or None

    def int(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.raw.get(key)
        if value in (None, ""):
            return default
        try:
            number = int(str(value).strip())
        except ValueError:
            raise SettingsError(f"setting {key} must be an integer, not {value!r}") from None
        if number < minimum:
            raise SettingsError(f"setting {key} must be at least {minimum}, not {number}")
        return number

    def float(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.raw.get(key)
        if value in (None, ""):
            return default
        try:
            number = float(str(value).strip())
        except ValueError:
            raise SettingsError(f"setting {key} must be a number, not {value!r}") from None
        if number < minimum:
            raise SettingsError(f"setting {key} must be at least {minimum}, not {number}")
        return number

    def bool(self, key: str, default: bool) -> bool:
        value = self.raw.get(key)
        if value is None:
            return default
        text = str(value).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        raise SettingsError(f"setting {key} must be true or false, not {value!r}")

    def list(self, key: str) -> tuple[str, ...]:
        return tuple((self.raw.get(key) or "").split())

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str(key, default)
        if value not in choices:
            raise SettingsError(f"setting {key} must be one of {', '.join(choices)}, not {value!r}")
        return value


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    url: str
    pool_size: int = 5
    echo: bool = False
    # MySQL/MariaDB only: seconds to connect (and read the server's greeting), to wait for any one
    # answer, and to send; without them a blackholed database held a request for ~140 s
    connect_timeout: int = 5
    read_timeout: int = 10
    write_timeout: int = 10
    # connections opened beyond pool_size when all are in use (closed when given back)
    max_overflow: int = 10
    # seconds a request waits for a pooled connection when all are in use
    pool_timeout: float = 5.0
    # MySQL/MariaDB only: at most this many threads wait on the database at once (connect, ping,
    # query, commit); more wait up to call_queue_timeout, then get 503. Keep it below the server's
    # threads, so that routes without the database (health, openapi.json) always find a free one.
    max_concurrent_calls: int = 4
    call_queue_timeout: float = 0.5
    # after the database failed to answer (a timeout, a lost or refused connection), calls fail at
    # once for this many seconds instead of each waiting out the timeouts again
    failure_cooldown: float = 5.0


@dataclass(frozen=True, kw_only=True)
class LdapSettings:
    uri: str
    user_base: str
    group_base: str
    bind_dn: str | None = None
    bind_password: str | None = field(default=None, repr=False)
    # {login} is replaced by the escaped login name
    user_filter: str = "(&(objectClass=posixAccount)(uid={login}))"
    # {uid} and {dn} are replaced by the escaped login name and the user's DN
    group_filter: str = (
        "(|(&(objectClass=posixGroup)(memberUid={uid}))(&(objectClass=groupOfNames)(member={dn})))"
    )
    # a directory's own lock flag besides OpenLDAP ppolicy, e.g. nsAccountLock (389-DS, FreeIPA)
    lock_attribute: str | None = None
    lock_value: str = "TRUE"
    fullname_attribute: str = "cn"
    email_attribute: str = "mail"
    description_attribute: str = "description"
    # seconds to connect and to wait for each answer (ldap3 takes whole seconds: rounded up)
    timeout: float = 5.0


@dataclass(frozen=True, kw_only=True)
class AuthSettings:
    secret: bytes = field(repr=False)
    idle_timeout: int = 6 * 3600
    max_age: int = 24 * 3600
    throttle_window: int = 300
    throttle_max_per_user: int = 5
    throttle_max_per_address: int = 20
    # a POSIX-style login name; anything else is refused before it reaches LDAP
    username_pattern: str = r"^[a-z_][a-z0-9_.-]{0,31}$"
    # seconds a verified token is trusted in-process before the database is asked again: the bound
    # on how late a revocation made on another replica takes effect here (0: ask every time)
    token_cache: float = 5.0


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 1024 * 1024
    # client addresses from X-Forwarded-For are believed only from these proxies
    trusted_proxies: tuple[str, ...] = ()
    # the host names a request may name in its Host header (a leading "." takes every subdomain);
    # empty: any, for development
    allowed_hosts: tuple[str, ...] = ()


IDENTITY_MODES = ("password", "certificate")
CLUSTER_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
FILESYSTEM_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
CLUSTER_KEYS = {
    "host",
    "port",
    "known_hosts",
    "identity",
    "description",
    "connect_timeout",
    "command_timeout",
    "output_limit",
    "max_sessions",
    "keepalive",
    "env",
    "command_prefix",
    "filesystems",
    "detail_cache",
    "max_concurrent_requests",
    "queue_timeout",
    "notebook_modes",
    "notebook_command",
    "notebook_command_prefix",
    "notebook_ports",
    "notebook_max_per_user",
    "notebook_max_hours",
    "notebook_max_cpus",
    "notebook_max_memory",
    "notebook_job_template",
    "notebook_url",
    "notebook_certfile",
    "notebook_keyfile",
    "transfer_partition",
    "transfer_time_limit",
}
NOTEBOOK_MODES = ("batch", "login")


@dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    name: str
    host: str
    known_hosts: str
    port: int = 22
    identity: str = "password"
    # the cluster's name when not set
    description: str = ""
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    output_limit: int = 16 * 1024 * 1024
    max_sessions: int = 8
    keepalive: int = 30
    env: tuple[tuple[str, str], ...] = ()
    # an admin's shell snippet run before each command, e.g. `module load slurm`
    command_prefix: str = ""
    # named file systems with $HOME, $USER and $GROUP resolved per person, in the order given
    filesystems: tuple[tuple[str, str], ...] = (("HOME", "$HOME"),)
    # seconds one user's answer of GET /clusters/{name} (one sinfo: two slurmctld RPCs) is served again
    # (0: read on every request). Portals poll this route; sinfo(1) asks programs to limit their calls
    # to slurmctld. 5 s: at most one sinfo per user and 5 s whatever the polling rate, while a portal
    # still sees a job's start or end on its next refresh or the one after (the answer says its age)
    detail_cache: float = 5.0
    # requests using this cluster at once (its bulkhead); one more waits for a slot while others
    # finish, and gets a 503 once none has finished for queue_timeout seconds (a hung cluster). The
    # shares of clusters that may hang together must stay below the server's threads (16 in the inis).
    max_concurrent_requests: int = 8
    queue_timeout: float = 1.0
    # Jupyter notebooks: the modes allowed, the first being the default (none, the default: no notebooks)
    notebook_modes: tuple[str, ...] = ()
    # the Jupyter server command (argv words), run after notebook_command_prefix (e.g. `module load jupyter`)
    notebook_command: tuple[str, ...] = ("jupyter-server",)
    notebook_command_prefix: str = ""
    # the ports notebooks listen on (inclusive), the old JUPYTER_PORTS; open them from the login node
    notebook_ports: tuple[int, int] = (8100, 8199)
    # live notebooks one person may hold on this cluster
    notebook_max_per_user: int = 2
    # the longest a notebook may live (hours); also its default life and hcc-cleanup's limit
    notebook_max_hours: int = 24
    # the most CPUs and memory (MiB) a batch notebook may ask for
    notebook_max_cpus: int = 8
    notebook_max_memory: int = 32768
    # a file on the service's host with the batch job script template (see docs/deploy.md)
    notebook_job_template: str | None = None
    # where users reach a notebook: {host} and {port} are replaced, the token is added as ?token=
    notebook_url: str = "https://{host}:{port}/"
    # the site's certificate and key, as paths on the cluster; none: one made per notebook
    notebook_certfile: str | None = None
    notebook_keyfile: str | None = None
    # long file operations run as Slurm jobs in this partition; empty: detached on the login node
    transfer_partition: str = ""
    # minutes such a job may run (sbatch --time)
    transfer_time_limit: int = 24 * 60


@dataclass(frozen=True, kw_only=True)
class SshSettings:
    ca_key: str | None = None
    max_connections: int = 256
    idle_timeout: float = 300.0
    # how long a cluster's probed status is reused before probing again
    status_ttl: float = 10.0
    # seconds after which a pooled connection logs in again (when it is next free)
    max_lifetime: float = 3600.0
    # SFTP sessions kept open per pooled connection between requests (0: one per request)
    sftp_sessions: int = 4
    # connections one person may hold to a cluster: a second and third open while every one has all
    # its sessions busy, and idle out after (1: one connection per person, shared by all requests)
    connections_per_user: int = 3


@dataclass(frozen=True, kw_only=True)
class FilesSettings:
    # the largest body of a file PUT or upload (they stream; hcc.api.max_body_bytes is for JSON)
    max_upload_bytes: int = 10 * 1024**3
    # seconds a download link works (never beyond its session)
    link_ttl: int = 3600
    # seconds a copy or a recursive delete of a tree may run on the cluster (others: command_timeout)
    tree_timeout: int = 600
    # seconds a large directory's sorted listing serves its next pages (0: every page reads it all)
    listing_snapshot: float = 10.0


@dataclass(frozen=True, kw_only=True)
class JobsSettings:
    # seconds between two looks at a followed job's output file and state: slurmctld is asked at
    # most this often per follow request
    output_poll_interval: float = 2.0
    # seconds a follow request stays open at most (it holds a thread, a channel and a cluster slot)
    output_follow_max_seconds: int = 600


@dataclass(frozen=True, kw_only=True)
class LegacySettings:
    # the legacy portal's change_password sends no current password field: it is allowed only this
    # many seconds after the session's login (0: never)
    password_change_window: int = 900


@dataclass(frozen=True, kw_only=True)
class OperationsSettings:
    # days a finished operation (and its folder on the cluster) is kept before hcc-cleanup removes it
    retention_days: int = 7
    # the synchronous copy and recursive delete refuse (413) trees past these; 0: no limit
    sync_max_bytes: int = 1024**3
    sync_max_files: int = 10000
    # seconds the certificate signed for one cluster-to-cluster push is valid (it must log in by then)
    certificate_ttl: int = 900
    # seconds without a progress update after which the worker is checked (job or process gone: failed)
    stale_after: int = 60


@dataclass(frozen=True, kw_only=True)
class Settings:
    database: DatabaseSettings
    ldap: LdapSettings
    auth: AuthSettings
    api: ApiSettings = field(default_factory=ApiSettings)
    ssh: SshSettings = field(default_factory=SshSettings)
    clusters: tuple[ClusterSettings, ...] = ()
    files: FilesSettings = field(default_factory=FilesSettings)
    jobs: JobsSettings = field(default_factory=JobsSettings)
    legacy: LegacySettings = field(default_factory=LegacySettings)
    operations: OperationsSettings = field(default_factory=OperationsSettings)


def default(cls: type, name: str):
    """The default of one setting: the dataclass field's, the one place defaults are written."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
            raise SettingsError(f"{cls.__name__}.{name} has no default: the setting is required")
    raise AttributeError(f"{cls.__name__} has no field {name}")


def parse_database(r: _Reader) -> DatabaseSettings:
    url = r.str("hcc.database.url")
    if "://" not in url:
        raise SettingsError(f"setting hcc.database.url is not a database URL: {url.split(':', 1)[0]!r}...")
    key = "hcc.database."

    def d(name: str):
        return default(DatabaseSettings, name)

    return DatabaseSettings(
        url=url,
        pool_size=r.int(key + "pool_size", d("pool_size"), minimum=1),
        echo=r.bool(key + "echo", d("echo")),
        connect_timeout=r.int(key + "connect_timeout", d("connect_timeout"), minimum=1),
        read_timeout=r.int(key + "read_timeout", d("read_timeout"), minimum=1),
        write_timeout=r.int(key + "write_timeout", d("write_timeout"), minimum=1),
        max_overflow=r.int(key + "max_overflow", d("max_overflow"), minimum=0),
        pool_timeout=r.float(key + "pool_timeout", d("pool_timeout"), minimum=0.1),
        max_concurrent_calls=r.int(key + "max_concurrent_calls", d("max_concurrent_calls"), minimum=1),
        call_queue_timeout=r.float(key + "call_queue_timeout", d("call_queue_timeout"), minimum=0.0),
        failure_cooldown=r.float(key + "failure_cooldown", d("failure_cooldown"), minimum=0.0),
    )


def parse_ldap(r: _Reader) -> LdapSettings:
    uri = r.str("hcc.ldap.uri")
    if not uri.startswith(("ldap://", "ldaps://")):
        raise SettingsError(f"setting hcc.ldap.uri must start with ldap:// or ldaps://, not {uri!r}")

    def d(name: str):
        return default(LdapSettings, name)

    user_filter = r.str("hcc.ldap.user_filter", d("user_filter"))
    if "{login}" not in user_filter:
        raise SettingsError("setting hcc.ldap.user_filter must contain {login}")
    return LdapSettings(
        uri=uri,
        bind_dn=r.optional("hcc.ldap.bind_dn"),
        bind_password=r.optional("hcc.ldap.bind_password"),
        user_base=r.str("hcc.ldap.user_base"),
        user_filter=user_filter,
        group_base=r.str("hcc.ldap.group_base"),
        group_filter=r.str("hcc.ldap.group_filter", d("group_filter")),
        lock_attribute=r.optional("hcc.ldap.lock_attribute"),
        lock_value=r.str("hcc.ldap.lock_value", d("lock_value")),
        fullname_attribute=r.str("hcc.ldap.fullname_attribute", d("fullname_attribute")),
        email_attribute=r.str("hcc.ldap.email_attribute", d("email_attribute")),
        description_attribute=r.str("hcc.ldap.description_attribute", d("description_attribute")),
        timeout=r.float("hcc.ldap.timeout", d("timeout"), minimum=0.1),
    )


def parse_auth(r: _Reader) -> AuthSettings:
    secret = r.str("hcc.auth.secret")
    if len(secret) < 32:
        raise SettingsError(
            "setting hcc.auth.secret must be at least 32 characters (e.g. `openssl rand -hex 32`)"
        )

    def d(name: str):
        return default(AuthSettings, name)

    idle = r.int("hcc.auth.idle_timeout", d("idle_timeout"), minimum=60)
    max_age = r.int("hcc.auth.max_age", d("max_age"), minimum=60)
    if idle > max_age:
        raise SettingsError("setting hcc.auth.idle_timeout must not exceed hcc.auth.max_age")
    return AuthSettings(
        secret=secret.encode(),
        idle_timeout=idle,
        max_age=max_age,
        throttle_window=r.int("hcc.auth.throttle_window", d("throttle_window"), minimum=1),
        throttle_max_per_user=r.int("hcc.auth.throttle_max_per_user", d("throttle_max_per_user"), minimum=1),
        throttle_max_per_address=r.int(
            "hcc.auth.throttle_max_per_address", d("throttle_max_per_address"), minimum=1
        ),
        username_pattern=r.str("hcc.auth.username_pattern", d("username_pattern")),
        token_cache=r.float("hcc.auth.token_cache", d("token_cache"), minimum=0.0),
    )


def parse_api(r: _Reader) -> ApiSettings:
    origins = r.list("hcc.api.cors_origins")
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise SettingsError(
                f"setting hcc.api.cors_origins: {origin!r} is not an origin (scheme://host[:port])"
            )
    return ApiSettings(
        cors_origins=origins,
        max_body_bytes=r.int("hcc.api.max_body_bytes", default(ApiSettings, "max_body_bytes"), minimum=1024),
        trusted_proxies=r.list("hcc.api.trusted_proxies"),
        allowed_hosts=_host_names(r, "hcc.api.allowed_hosts"),
    )


_HOST_NAME_RE = re.compile(r"^\.?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$|^\[[0-9a-f:.]+\]$")


def _host_names(r: _Reader, key: str) -> tuple[str, ...]:
    """Host names without a port, lower case; an IPv6 address in brackets as in a Host header."""
    names = tuple(name.lower() for name in r.list(key))
    for name in names:
        if not _HOST_NAME_RE.match(name):
            raise SettingsError(f"setting {key}: {name!r} is not a host name (no scheme, no port)")
    return names


def _pairs(r: _Reader, key: str, name_re: re.Pattern) -> tuple[tuple[str, str], ...]:
    """``NAME=value NAME=value`` -> ((NAME, value), ...), names checked against name_re."""
    out = []
    for item in r.list(key):
        name, sep, value = item.partition("=")
        if not sep or not name_re.match(name):
            raise SettingsError(f"setting {key}: {item!r} is not NAME=value")
        out.append((name, value))
    return tuple(out)


def parse_cluster(r: _Reader, name: str) -> ClusterSettings:
    prefix = f"hcc.cluster.{name}."

    def d(key: str):
        return default(ClusterSettings, key)

    known_hosts = r.str(prefix + "known_hosts")
    if not os.path.isabs(known_hosts):
        raise SettingsError(f"setting {prefix}known_hosts must be an absolute path")
    filesystems = _pairs(r, prefix + "filesystems", FILESYSTEM_NAME_RE) or d("filesystems")
    for fs_name, path in filesystems:
        if not (path.startswith("/") or path.startswith("$HOME")):
            raise SettingsError(
                f"setting {prefix}filesystems: {fs_name} must be an absolute path or start with $HOME"
            )
    return ClusterSettings(
        name=name,
        host=r.str(prefix + "host"),
        port=r.int(prefix + "port", d("port"), minimum=1),
        known_hosts=known_hosts,
        identity=r.choice(prefix + "identity", d("identity"), IDENTITY_MODES),
        description=r.str(prefix + "description", d("description") or name),
        connect_timeout=r.float(prefix + "connect_timeout", d("connect_timeout"), minimum=0.1),
        command_timeout=r.float(prefix + "command_timeout", d("command_timeout"), minimum=0.1),
        output_limit=r.int(prefix + "output_limit", d("output_limit"), minimum=1024),
        max_sessions=r.int(prefix + "max_sessions", d("max_sessions"), minimum=1),
        keepalive=r.int(prefix + "keepalive", d("keepalive"), minimum=0),
        env=_pairs(r, prefix + "env", re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")),
        command_prefix=r.str(prefix + "command_prefix", d("command_prefix")),
        filesystems=filesystems,
        detail_cache=_detail_cache(r, prefix + "detail_cache", d("detail_cache")),
        max_concurrent_requests=r.int(
            prefix + "max_concurrent_requests", d("max_concurrent_requests"), minimum=1
        ),
        queue_timeout=r.float(prefix + "queue_timeout", d("queue_timeout"), minimum=0.0),
        transfer_partition=_partition(r, prefix + "transfer_partition"),
        transfer_time_limit=r.int(prefix + "transfer_time_limit", d("transfer_time_limit"), minimum=1),
        **parse_notebook_keys(r, prefix),
    )


def _detail_cache(r: _Reader, key: str, default_seconds: float) -> float:
    # an hour at most (and never nan or inf): past that the route would show a cluster's state of
    # long ago, which `details_as_of` would say but few portals would read
    seconds = r.float(key, default_seconds, minimum=0.0)
    if not seconds <= 3600:
        raise SettingsError(f"setting {key} must be at most 3600 seconds, not {r.raw[key]!r}")
    return seconds


def _port_range(r: _Reader, key: str, default_range: tuple[int, int]) -> tuple[int, int]:
    text = r.optional(key)
    if text is None:
        return default_range
    match = re.fullmatch(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*", text)
    if not match:
        raise SettingsError(f"setting {key} must be a port range like 8100-8199, not {text!r}")
    low, high = int(match.group(1)), int(match.group(2))
    if not 1024 <= low <= high <= 65535:
        raise SettingsError(f"setting {key} must lie within 1024-65535, low to high, not {text!r}")
    return low, high


def parse_notebook_keys(r: _Reader, prefix: str) -> dict:
    """The hcc.cluster.<name>.notebook_* keys, as ClusterSettings' keyword arguments."""

    def d(key: str):
        return default(ClusterSettings, key)

    key = prefix + "notebook_"
    modes = r.list(key + "modes") if key + "modes" in r.raw else d("notebook_modes")
    for mode in modes:
        if mode not in NOTEBOOK_MODES:
            raise SettingsError(f"setting {key}modes: {mode!r} is not one of {', '.join(NOTEBOOK_MODES)}")
    if len(set(modes)) != len(modes):
        raise SettingsError(f"setting {key}modes names a mode twice")
    template = r.optional(key + "job_template")
    if template is not None and not os.path.isfile(template):
        raise SettingsError(f"setting {key}job_template: {template!r} is not a readable file")
    url = r.str(key + "url", d("notebook_url"))
    if not url.startswith(("https://", "http://")) or "{port}" not in url:
        raise SettingsError(f"setting {key}url must be an http(s) URL template holding {{port}}")
    certfile, keyfile = r.optional(key + "certfile"), r.optional(key + "keyfile")
    if (certfile is None) != (keyfile is None):
        raise SettingsError(f"settings {key}certfile and {key}keyfile go together")
    try:
        # shell words, so that an argument may hold spaces (`sh -c 'exec sleep 300' stand-in`)
        command = tuple(shlex.split(r.optional(key + "command") or "")) or d("notebook_command")
    except ValueError as exc:
        raise SettingsError(f"setting {key}command: {exc}") from None
    return {
        "notebook_modes": modes,
        "notebook_command": command,
        "notebook_command_prefix": r.str(key + "command_prefix", d("notebook_command_prefix")),
        "notebook_ports": _port_range(r, key + "ports", d("notebook_ports")),
        "notebook_max_per_user": r.int(key + "max_per_user", d("notebook_max_per_user"), minimum=1),
        "notebook_max_hours": r.int(key + "max_hours", d("notebook_max_hours"), minimum=1),
        "notebook_max_cpus": r.int(key + "max_cpus", d("notebook_max_cpus"), minimum=1),
        "notebook_max_memory": r.int(key + "max_memory", d("notebook_max_memory"), minimum=64),
        "notebook_job_template": template,
        "notebook_url": url,
        "notebook_certfile": certfile,
        "notebook_keyfile": keyfile,
    }


PARTITION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _partition(r: _Reader, key: str) -> str:
    value = r.optional(key) or ""
    if value and not PARTITION_RE.match(value):
        raise SettingsError(f"setting {key}: {value!r} is not a partition name")
    return value


def parse_clusters(r: _Reader) -> tuple[ClusterSettings, ...]:
    names = r.list("hcc.clusters")
    for name in names:
        if not CLUSTER_NAME_RE.match(name):
            raise SettingsError(f"setting hcc.clusters: {name!r} is not a cluster name ([a-z][a-z0-9_-]*)")
    if len(set(names)) != len(names):
        raise SettingsError("setting hcc.clusters names a cluster twice")
    # a typo in a cluster key must not be silently ignored
    for key in r.raw:
        if key.startswith("hcc.cluster."):
            cluster, _, rest = key.removeprefix("hcc.cluster.").partition(".")
            if cluster not in names:
                raise SettingsError(f"setting {key}: cluster {cluster!r} is not listed in hcc.clusters")
            if rest not in CLUSTER_KEYS:
                raise SettingsError(f"setting {key}: unknown cluster key {rest!r}")
    return tuple(parse_cluster(r, name) for name in names)


def parse_ssh(r: _Reader, clusters: tuple[ClusterSettings, ...]) -> SshSettings:
    ca_key = r.optional("hcc.ssh.ca_key")
    if any(c.identity == "certificate" for c in clusters) and not ca_key:
        raise SettingsError("setting hcc.ssh.ca_key is required when a cluster uses identity = certificate")

    def d(name: str):
        return default(SshSettings, name)

    return SshSettings(
        ca_key=ca_key,
        max_connections=r.int("hcc.ssh.max_connections", d("max_connections"), minimum=1),
        idle_timeout=r.float("hcc.ssh.idle_timeout", d("idle_timeout"), minimum=1.0),
        status_ttl=r.float("hcc.ssh.status_ttl", d("status_ttl"), minimum=0.0),
        max_lifetime=r.float("hcc.ssh.max_lifetime", d("max_lifetime"), minimum=1.0),
        sftp_sessions=r.int("hcc.ssh.sftp_sessions", d("sftp_sessions"), minimum=0),
        connections_per_user=r.int("hcc.ssh.connections_per_user", d("connections_per_user"), minimum=1),
    )


def parse_files(r: _Reader) -> FilesSettings:
    def d(name: str):
        return default(FilesSettings, name)

    return FilesSettings(
        max_upload_bytes=r.int("hcc.files.max_upload_bytes", d("max_upload_bytes"), minimum=1),
        link_ttl=r.int("hcc.files.link_ttl", d("link_ttl"), minimum=1),
        tree_timeout=r.int("hcc.files.tree_timeout", d("tree_timeout"), minimum=1),
        listing_snapshot=r.float("hcc.files.listing_snapshot", d("listing_snapshot"), minimum=0.0),
    )


def parse_jobs(r: _Reader) -> JobsSettings:
    def d(name: str):
        return default(JobsSettings, name)

    interval = r.float("hcc.jobs.output_poll_interval", d("output_poll_interval"), minimum=0.2)
    if interval > 60:
        raise SettingsError(f"setting hcc.jobs.output_poll_interval must be at most 60, not {interval}")
    return JobsSettings(
        output_poll_interval=interval,
        output_follow_max_seconds=r.int(
            "hcc.jobs.output_follow_max_seconds", d("output_follow_max_seconds"), minimum=1
        ),
    )


def parse_legacy(r: _Reader) -> LegacySettings:
    return LegacySettings(
        password_change_window=r.int(
            "hcc.legacy.password_change_window", default(LegacySettings, "password_change_window"), minimum=0
        ),
    )


def parse_operations(r: _Reader) -> OperationsSettings:
    key = "hcc.operations."

    def d(name: str):
        return default(OperationsSettings, name)

    return OperationsSettings(
        retention_days=r.int(key + "retention_days", d("retention_days"), minimum=1),
        sync_max_bytes=r.int(key + "sync_max_bytes", d("sync_max_bytes"), minimum=0),
        sync_max_files=r.int(key + "sync_max_files", d("sync_max_files"), minimum=0),
        certificate_ttl=r.int(key + "certificate_ttl", d("certificate_ttl"), minimum=60),
        stale_after=r.int(key + "stale_after", d("stale_after"), minimum=5),
    )


def parse_settings(raw: Mapping[str, str], environ: Mapping[str, str] | None = None) -> Settings:
    """Parse every hcc.* key; raise SettingsError naming the first bad key."""
    r = _Reader(raw, os.environ if environ is None else environ)
    clusters = parse_clusters(r)
    return Settings(
        database=parse_database(r),
        ldap=parse_ldap(r),
        auth=parse_auth(r),
        api=parse_api(r),
        ssh=parse_ssh(r, clusters),
        clusters=clusters,
        files=parse_files(r),
        jobs=parse_jobs(r),
        legacy=parse_legacy(r),
        operations=parse_operations(r),
    )


def includeme(config) -> None:
    """Parse the settings once; every other part reads ``registry.hcc_settings``."""
    config.registry.hcc_settings = parse_settings(config.get_settings())
