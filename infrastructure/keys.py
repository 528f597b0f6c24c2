"""Key rings from settings: `secret` or `kid1:secret1,kid2:secret2` (the first signs).

Older keys stay in the ring to verify what they signed, which is how signing keys rotate.
Each use (API tokens, declaration QR codes) signs with a key derived for its purpose.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

MIN_SECRET_BYTES = 16


class KeyRing:
    """Signing secrets by key id: the first signs, all of them verify (key rotation)."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        ring: dict[str, bytes] = {}
        for kid, secret in keys:
            if not kid or kid in ring:
                raise ValueError(f"key ids must be unique and non-empty, got {kid!r}")
            if len(secret) < MIN_SECRET_BYTES:
                raise ValueError(f"the secret of key {kid!r} is shorter than {MIN_SECRET_BYTES}")
            ring[kid] = secret
        self._keys = ring
        self.current_kid = keys[0][0]

    @classmethod
    def from_setting(cls, value: str) -> KeyRing:
        """Parse ``secret`` (key id derived from its hash) or ``kid1:secret1,kid2:secret2``.

        With a list, the first key is current; the others only verify.
        """
        value = value.strip()
        if ":" not in value:
            kid = hashlib.sha256(b"vaxreg key id\x00" + value.encode()).hexdigest()[:16]
            return cls([(kid, value.encode())])
        keys = []
        for item in value.split(","):
            kid, sep, text = item.strip().partition(":")
            if not sep:
                raise ValueError("each key of the list must read kid:secret")
            keys.append((kid.strip(), text.strip().encode()))
        return cls(keys)

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def secret(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def derive(self, purpose: str, kid: str | None = None) -> bytes:
        """A key for `purpose` (HMAC-SHA256 of the label), from key `kid` or the current one."""
        if not purpose:
            raise ValueError("a derived key needs a purpose")
        secret = self._keys[kid or self.current_kid]
        return hmac.new(secret, b"vaxreg/" + purpose.encode(), hashlib.sha256).digest()

    def derived(self, purpose: str) -> KeyRing:
        """The ring of keys derived for `purpose`, with the same key ids and current key."""
        return KeyRing([(kid, self.derive(purpose, kid)) for kid in self._keys])

    def __repr__(self) -> str:
        return f"KeyRing(kids={self.kids!r}, current={self.current_kid!r})"
