"""QR tokens of health declarations: signed, unguessable, free of personal data, expiring.

A token reads `<kid>.<declaration id>.<valid until, unix seconds>.<mac>`; the MAC is an
HMAC-SHA256 (truncated to 128 bits) under the signing key named by `kid`, so keys rotate
by adding a new current key while older ones still verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

from domain.errors import DeclarationInvalid

MAC_BYTES = 16


class SigningKeys(Protocol):
    """Secrets by key id; the current one signs."""

    @property
    def current_kid(self) -> str: ...

    def secret(self, kid: str) -> bytes | None: ...


class QrTokens:
    def __init__(self, keys: SigningKeys) -> None:
        self._keys = keys

    def issue(self, declaration_id: UUID, valid_until: datetime) -> str:
        kid = self._keys.current_kid
        secret = self._keys.secret(kid)
        if secret is None:
            raise ValueError("the current key id has no secret")
        body = f"{kid}.{declaration_id.hex}.{int(valid_until.timestamp())}"
        return f"{body}.{self._mac(secret, body)}"

    def verify(self, token: str, now: datetime) -> UUID:
        """The declaration id a genuine, unexpired token names; anything else is refused."""
        parts = token.strip().split(".")
        if len(parts) != 4 or len(token) > 200:
            raise DeclarationInvalid("not a declaration QR token")
        kid, declaration_hex, until, mac = parts
        key = self._keys.secret(kid)
        body = f"{kid}.{declaration_hex}.{until}"
        if key is None or not hmac.compare_digest(mac, self._mac(key, body)):
            raise DeclarationInvalid("the QR token's signature is not valid")
        if not until.isdigit() or datetime.fromtimestamp(int(until), UTC) <= now:
            raise DeclarationInvalid("the declaration behind this QR token has expired")
        return UUID(hex=declaration_hex)

    @staticmethod
    def _mac(key: bytes, body: str) -> str:
        digest = hmac.new(key, b"qr\x00" + body.encode(), hashlib.sha256).digest()[:MAC_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
