"""Tokens and sealed credentials."""

import pytest

from hcc_federation.auth.crypto import (
    new_token,
    open_credential,
    parse_token,
    seal_credential,
    token_hash,
    token_matches,
)
from hcc_federation.auth.directory import ppolicy_error

SECRET = b"server-secret-" + b"x" * 32


def test_tokens_are_random_and_parse_back():
    a, b = new_token(), new_token()
    assert a != b
    assert parse_token(str(a)) == a
    assert a.secret not in repr(a)


@pytest.mark.parametrize(
    "text", ["", "abc", "0" * 32, "0" * 32 + ".", "0" * 31 + "." + "A" * 43, "Z" * 32 + "." + "A" * 43]
)
def test_garbled_tokens_do_not_parse(text):
    assert parse_token(text) is None


def test_token_hash_needs_the_server_secret():
    token = new_token()
    stored = token_hash(SECRET, token)
    assert token.secret not in stored
    assert token_matches(SECRET, token, stored)
    assert not token_matches(b"other-secret-" + b"y" * 32, token, stored)


def test_sealed_credentials_open_only_with_both_token_and_server_secret():
    token, other = new_token(), new_token()
    blob = seal_credential(SECRET, token, {"password": "alice-pw-1"})
    assert b"alice-pw-1" not in blob
    assert open_credential(SECRET, token, blob) == {"password": "alice-pw-1"}
    assert open_credential(SECRET, other, blob) is None
    assert open_credential(b"another-server-" + b"z" * 32, token, blob) is None
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    assert open_credential(SECRET, token, tampered) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"0\x03\x81\x01\x01", "accountLocked"),
        (b"0\x03\x81\x01\x00", "passwordExpired"),
        (b"0\x00", None),
        # a warning (timeBeforeExpiration 60) before the error
        (b"0\x09\xa0\x04\x80\x02\x00\x3c\x81\x01\x01", "accountLocked"),
        (b"", None),
        (None, None),
        (b"\x04\x00", None),
        # BER lets a length take the long form (X.690 8.1.3.5): the error is still accountLocked
        (b"0\x81\x03\x81\x01\x01", "accountLocked"),
        # a grace-login warning ([0] { [1] 2 }) and no error
        (b"0\x05\xa0\x03\x81\x01\x02", None),
        # an error code the draft does not define
        (b"0\x03\x81\x01\x09", "unknown"),
        # cut short, or not the control's schema at all: no error is read from it
        (b"0\x03\x81\x01", None),
        (b"0\x03\x82\x01\x01", None),
    ],
)
def test_ppolicy_response_control(value, expected):
    assert ppolicy_error(value) == expected


# Recorded on the test bed (OpenLDAP 2.5 ppolicy overlay, scripts/testbed): the control value of a
# bind with the ppolicy request control, for alice (not locked, right password) and carol (locked by
# pwdAccountLockedTime; the same bytes come back for her right and for a wrong password).
RECORDED_CONTROLS = {
    "alice, right password": (b"0\x00", None),
    "carol, locked": (b"0\x03\x81\x01\x01", "accountLocked"),
}


@pytest.mark.parametrize("who", sorted(RECORDED_CONTROLS))
def test_ppolicy_control_recorded_on_the_bed(who):
    value, expected = RECORDED_CONTROLS[who]
    assert ppolicy_error(value) == expected
