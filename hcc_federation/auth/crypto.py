"""Bearer tokens and the custody of a person's cluster credentials.

A token is ``<token_id>.<secret>``. The database keeps the token id (for one indexed lookup) and an
HMAC of the secret under the server secret, never the secret itself. Credentials (a password, later
an SSH key) are sealed with AES-GCM under a key derived from both the token's secret and the server
secret: a copy of the database cannot open them, nor can a token without the server's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_RE = re.compile(r"^([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")
_CREDENTIAL_VERSION = b"\x01"


@dataclass(frozen=True)
class Token:
    token_id: str
    secret: str

    def __str__(self) -> str:
        return f"{self.token_id}.{self.secret}"

    def __repr__(self) -> str:  # never print the secret half
        return f"Token({self.token_id!r}, ...)"


def new_token() -> Token:
    return Token(secrets.token_hex(16), secrets.token_urlsafe(32))


def parse_token(text: str) -> Token | None:
    """The token in an Authorization header, or None when it is not one of ours."""
    match = TOKEN_RE.match(text)
    return Token(match.group(1), match.group(2)) if match else None


def token_hash(server_secret: bytes, token: Token) -> str:
    return hmac.new(server_secret, token.secret.encode(), hashlib.sha256).hexdigest()


def token_matches(server_secret: bytes, token: Token, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(server_secret, token), stored_hash)


def _credential_key(server_secret: bytes, token: Token) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=token.secret.encode(), info=b"hcc-federation credential"
    )
    return hkdf.derive(server_secret)


def seal_credential(server_secret: bytes, token: Token, credential: dict) -> bytes:
    """Encrypt a credential dict; the token id is bound in as associated data."""
    nonce = secrets.token_bytes(12)
    plaintext = json.dumps(credential).encode()
    sealed = AESGCM(_credential_key(server_secret, token)).encrypt(nonce, plaintext, token.token_id.encode())
    return _CREDENTIAL_VERSION + nonce + sealed


def open_credential(server_secret: bytes, token: Token, blob: bytes) -> dict | None:
    """The credential dict, or None when the blob does not open with this token and secret."""
    if not blob or blob[:1] != _CREDENTIAL_VERSION:
        return None
    try:
        plaintext = AESGCM(_credential_key(server_secret, token)).decrypt(
            blob[1:13], blob[13:], token.token_id.encode()
        )
    except InvalidTag:
        return None
    return json.loads(plaintext)
