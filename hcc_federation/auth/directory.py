"""Our facade over the LDAP directory: authenticate, read a profile, change a password, health.

The rest of the service only sees this module. From pyramid_ldap3 we take what fits: the parsing of
one or several server URIs into ldap3 servers (``ConnectionManager``) and RFC 4515 escaping. Binds
and searches are ours: its ``authenticate`` swallows the bind result, and with it OpenLDAP's
password-policy control, the only place that says an account is locked; its ``connection()`` sets
no connect or receive timeout and is read-only (no Password Modify); its group query caches results
per time slice and needs Configurator directives. The ppolicy control is decoded with pyasn1.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field

import ldap3
from ldap3.core.exceptions import LDAPException, LDAPSASLPrepError, LDAPSocketOpenError
from ldap3.protocol.sasl.sasl import sasl_prep
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, namedval, tag, univ
from pyramid_ldap3 import ConnectionManager, escape_for_search

from ..errors import DomainError, InvalidArgument
from ..settings import LdapSettings, Settings

log = logging.getLogger(__name__)

# draft-behera-ldap-password-policy: request control OID, and the error codes of its response
PPOLICY_OID = "1.3.6.1.4.1.42.2.27.8.5.1"
PPOLICY_ERRORS = {
    0: "passwordExpired",
    1: "accountLocked",
    2: "changeAfterReset",
    3: "passwordModNotAllowed",
    4: "mustSupplyOldPassword",
    5: "insufficientPasswordQuality",
    6: "passwordTooShort",
    7: "passwordTooYoung",
    8: "passwordInHistory",
}
INVALID_CREDENTIALS = 49


def _context(number: int, form: int = tag.tagFormatSimple) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, form, number)


class InvalidCredentials(DomainError):
    """Wrong credentials, as the caller sees them. ``reason`` is for the audit log and admins only:
    an unknown user, a wrong password and a ppolicy-locked account must look the same to a caller."""

    field = "credentials"

    def __init__(self, description: str = "wrong username or password", *, reason: str | None = None):
        super().__init__(description)
        self.reason = reason or description


class LockedByPolicy(InvalidCredentials):
    """A bind refused as locked by ppolicy, password unproven: the caller sees a wrong password."""


class AccountLocked(DomainError):
    """The password was right but the account is locked (ppolicy)."""

    field = "username"


class UnknownUser(DomainError):
    """A user who had a session is no longer in the directory."""

    field = "username"


class DirectoryUnavailable(DomainError):
    """The directory did not answer, or refused the service account."""

    field = "ldap"


class PasswordRefused(InvalidArgument):
    """The directory's password policy refused the new password."""

    field = "new_password"


class WrongCurrentPassword(InvalidArgument):
    """A password change gave the wrong current password."""

    field = "current_password"


def bindable(password: str) -> bool:
    """Whether ldap3 can send this password in a simple bind at all.

    ldap3 applies SASLprep (RFC 4013) to a password and raises on NUL, control characters,
    non-characters and lone surrogates. No directory entry can hold such a password, so it is a
    wrong one (401), not a directory failure (it gave 503 "the directory bind failed").
    """
    try:
        sasl_prep(password)
    except LDAPSASLPrepError:
        return False
    return True


@dataclass(frozen=True)
class Person:
    username: str
    dn: str
    fullname: str | None
    email: str | None
    description: str | None
    groups: list[str] = field(default_factory=list)
    locked: bool = False


class _PolicyWarning(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("timeBeforeExpiration", univ.Integer().subtype(implicitTag=_context(0))),
        namedtype.NamedType("graceAuthNsRemaining", univ.Integer().subtype(implicitTag=_context(1))),
    )


class _PolicyError(univ.Enumerated):
    namedValues = namedval.NamedValues(*((name, code) for code, name in PPOLICY_ERRORS.items()))


class PasswordPolicyResponseValue(univ.Sequence):
    """draft-behera-ldap-password-policy-11, section 6.2, as a pyasn1 schema.

    ``warning`` is a CHOICE, so its [0] tag is explicit (constructed, 0xA0); ``error`` is implicitly
    tagged [1] (0x81): OpenLDAP 2.5 sends ``30 03 81 01 01`` for a locked account (carol, test bed).
    """

    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType(
            "warning", _PolicyWarning().subtype(explicitTag=_context(0, tag.tagFormatConstructed))
        ),
        namedtype.OptionalNamedType("error", _PolicyError().subtype(implicitTag=_context(1))),
    )


def ppolicy_error(control_value: bytes | None) -> str | None:
    """The error named by a password-policy response control, or None.

    A value that does not decode as the control's schema names no error: the bind result itself
    (49, or a refusal) still decides, so a garbled control can never make a bind succeed.
    """
    if not control_value:
        return None
    try:
        value, _ = ber_decoder.decode(control_value, asn1Spec=PasswordPolicyResponseValue())
    except PyAsn1Error:
        return None
    error = value["error"]
    if not error.isValue:
        return None
    return PPOLICY_ERRORS.get(int(error), "unknown")


def _first(attributes: dict, name: str) -> str | None:
    value = attributes.get(name)
    if isinstance(value, list):
        return str(value[0]) if value else None
    return str(value) if value not in (None, "") else None


def _close(conn: ldap3.Connection) -> None:
    """Unbind and close, also after a failed open: ldap3 leaves the socket of a failed connect open."""
    with contextlib.suppress(LDAPException):
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        sock.close()


class Directory:
    """The LDAP directory as the service needs it. Thread safe: a connection per call.

    No pool (hcc.ldap.pool_size was parsed and never used, and is gone): a login binds as the person,
    which changes a connection's identity, so only the service account's searches could share one;
    and a pooled connection keeps ldap3 server objects, which remember a failed address as
    unavailable (see _server) -- the very state a fresh connection per call avoids.
    """

    def __init__(self, settings: LdapSettings):
        self.settings = settings
        self._seconds = max(1, math.ceil(settings.timeout))

    @classmethod
    def from_settings(cls, settings: Settings) -> Directory:
        return cls(settings.ldap)

    # -- connections ---------------------------------------------------------------------------
    def _server(self):
        """Fresh server objects for each connection: ldap3 remembers an address that failed once
        as unavailable for minutes, which would keep a login failing after the directory is back."""
        manager = ConnectionManager(self.settings.uri, use_pool=False)
        for server in getattr(manager.server, "servers", [manager.server]):
            # without it an unreachable (not refusing) server would hang a login for minutes;
            # ldap3 packs both timeouts into socket options as whole seconds
            server.connect_timeout = self._seconds
        return manager.server

    def _connection(self, user: str | None, password: str | None) -> ldap3.Connection:
        return ldap3.Connection(
            self._server(),
            user=user,
            password=password,
            client_strategy=ldap3.SYNC,
            receive_timeout=self._seconds,
            raise_exceptions=False,
            read_only=False,
        )

    def _service_connection(self) -> ldap3.Connection:
        conn = self._connection(self.settings.bind_dn, self.settings.bind_password)
        try:
            conn.open()
            if self.settings.bind_dn and not conn.bind():
                raise DirectoryUnavailable(f"the service account cannot bind: {conn.result['description']}")
        except LDAPException as exc:
            _close(conn)
            raise DirectoryUnavailable(f"the directory is unreachable: {exc.__class__.__name__}") from exc
        except DirectoryUnavailable:
            _close(conn)
            raise
        return conn

    # -- lookups -------------------------------------------------------------------------------
    def _user_attributes(self) -> list[str]:
        s = self.settings
        attrs = [s.fullname_attribute, s.email_attribute, s.description_attribute, "uid"]
        if s.lock_attribute:
            attrs.append(s.lock_attribute)
        return attrs

    def _find_user(self, conn: ldap3.Connection, username: str) -> tuple[str, dict] | None:
        s = self.settings
        search_filter = s.user_filter.replace("{login}", escape_for_search(username))
        try:
            conn.search(
                s.user_base, search_filter, ldap3.SUBTREE, attributes=self._user_attributes(), size_limit=2
            )
        except LDAPException as exc:
            raise DirectoryUnavailable(f"the directory search failed: {exc.__class__.__name__}") from exc
        if conn.result["result"] not in (0, 4):  # 4: sizeLimitExceeded, i.e. ambiguous
            if conn.result["result"] == 32:  # noSuchObject: the base itself is missing
                return None
            raise DirectoryUnavailable(f"the directory search failed: {conn.result['description']}")
        entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        if len(entries) != 1:
            return None
        return entries[0]["dn"], dict(entries[0]["attributes"])

    def _is_locked_by_attribute(self, attributes: dict) -> bool:
        s = self.settings
        if not s.lock_attribute:
            return False
        value = _first(attributes, s.lock_attribute)
        return value is not None and value.lower() == s.lock_value.lower()

    def _groups(self, conn: ldap3.Connection, username: str, dn: str) -> list[str]:
        s = self.settings
        search_filter = s.group_filter.replace("{uid}", escape_for_search(username)).replace(
            "{dn}", escape_for_search(dn)
        )
        conn.search(s.group_base, search_filter, ldap3.SUBTREE, attributes=["cn"])
        names = {
            _first(e["attributes"], "cn") for e in conn.response or [] if e.get("type") == "searchResEntry"
        }
        return sorted(n for n in names if n)

    # -- the operations ------------------------------------------------------------------------
    def authenticate(self, username: str, password: str) -> Person:
        """Check a password with a bind as the person; raise InvalidCredentials, AccountLocked or
        DirectoryUnavailable. An unknown user and a wrong password look the same to the caller."""
        if not password:
            # an empty password would be an unauthenticated bind, which succeeds (RFC 4513 5.1.2)
            raise InvalidCredentials(reason="empty password")
        if not bindable(password):
            raise InvalidCredentials(reason="a password that SASLprep refuses")
        conn = self._service_connection()
        try:
            found = self._find_user(conn, username)
        finally:
            _close(conn)
        if found is None:
            raise InvalidCredentials(reason="unknown user")
        dn, attributes = found
        user_conn = self._connection(dn, password)
        try:
            user_conn.open()
            bound = user_conn.bind(controls=[(PPOLICY_OID, False, None)])
        except LDAPSocketOpenError as exc:
            raise DirectoryUnavailable("the directory is unreachable") from exc
        except LDAPException as exc:
            raise DirectoryUnavailable(f"the directory bind failed: {exc.__class__.__name__}") from exc
        finally:
            _close(user_conn)
        control = (user_conn.result.get("controls") or {}).get(PPOLICY_OID) or {}
        policy_error = ppolicy_error(control.get("value"))
        if not bound:
            if policy_error == "accountLocked":
                # OpenLDAP's ppolicy refuses a locked account's bind before it checks the password
                # (on the test bed carol gets result 49 with accountLocked for her right password
                # and for a wrong one): saying "locked" here would tell anyone which accounts are
                # locked without proving the password. Admins read it in the audit log.
                raise LockedByPolicy(reason="account locked (ppolicy), password not checked")
            if user_conn.result.get("result") == INVALID_CREDENTIALS:
                raise InvalidCredentials(reason="wrong password")
            raise DirectoryUnavailable(
                f"the directory refused the bind: {user_conn.result.get('description')}"
            )
        if self._is_locked_by_attribute(attributes):
            # the bind proved the password: only now may the caller learn that the account is locked
            raise AccountLocked("the account is locked")
        return self._person(username, dn, attributes, groups=[])

    def _person(self, username: str, dn: str, attributes: dict, groups: list[str]) -> Person:
        s = self.settings
        return Person(
            username=username,
            dn=dn,
            fullname=_first(attributes, s.fullname_attribute),
            email=_first(attributes, s.email_attribute),
            description=_first(attributes, s.description_attribute),
            groups=groups,
            locked=self._is_locked_by_attribute(attributes),
        )

    def profile(self, username: str) -> Person | None:
        """The person's profile and groups, read with the service account; None if unknown."""
        conn = self._service_connection()
        try:
            found = self._find_user(conn, username)
            if found is None:
                return None
            dn, attributes = found
            groups = self._groups(conn, username, dn)
        except LDAPException as exc:
            raise DirectoryUnavailable(f"the directory search failed: {exc.__class__.__name__}") from exc
        finally:
            _close(conn)
        return self._person(username, dn, attributes, groups)

    def change_password(self, username: str, current: str, new: str) -> None:
        """Change a password through the Password Modify extended operation, bound as the person.

        Raise WrongCurrentPassword, PasswordRefused (only once the current password bound),
        InvalidCredentials (no such person) or DirectoryUnavailable.
        """
        if not current or not bindable(current):
            raise WrongCurrentPassword("the current password is wrong")
        person = self.profile(username)
        if person is None:
            raise InvalidCredentials(reason="unknown user")
        conn = self._connection(person.dn, current)
        try:
            conn.open()
            if not conn.bind():
                raise WrongCurrentPassword("the current password is wrong")
            # checked only now: the API takes PasswordRefused as a proven current password, which
            # forgives earlier failures
            if not bindable(new):
                raise PasswordRefused(
                    "the new password has characters that an LDAP password cannot hold (RFC 4013)"
                )
            done = conn.extend.standard.modify_password(
                user=person.dn, old_password=current, new_password=new, controls=[(PPOLICY_OID, False, None)]
            )
        except LDAPException as exc:
            raise DirectoryUnavailable(f"the directory is unreachable: {exc.__class__.__name__}") from exc
        finally:
            _close(conn)
        if not done:
            result = conn.result or {}
            control = (result.get("controls") or {}).get(PPOLICY_OID) or {}
            reason = result.get("message") or ppolicy_error(control.get("value")) or result.get("description")
            raise PasswordRefused(f"the directory refused the new password: {reason}")

    def check(self) -> None:
        """Health: the service account binds and reads the user base; raise DirectoryUnavailable."""
        conn = self._service_connection()
        try:
            conn.search(self.settings.user_base, "(objectClass=*)", ldap3.BASE, attributes=["1.1"])
            if conn.result["result"] != 0:
                raise DirectoryUnavailable(f"cannot read the user base: {conn.result['description']}")
        except LDAPException as exc:
            raise DirectoryUnavailable(f"the directory search failed: {exc.__class__.__name__}") from exc
        finally:
            _close(conn)
