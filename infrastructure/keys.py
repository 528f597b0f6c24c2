"""Key rings from settings: `secret` or `kid1:secret1,kid2:secret2` (the first signs).

Older keys stay in the ring to verify what they signed, which is how signing keys rotate.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

MIN_SECRET_LENGTH = 16


@dataclass(frozen=True)
class KeyRing:
    keys: dict[str, bytes]
    current: str

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            kid, _, secret = item.partition(":") if ":" in item else ("", "", item)
            kid = kid or hashlib.sha256(secret.encode()).hexdigest()[:8]
            if len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(f"key {kid!r} is shorter than {MIN_SECRET_LENGTH} characters")
            keys[kid] = secret.encode()
            order.append(kid)
        if not order:
            raise ValueError("the key ring is empty")
        return cls(keys, order[0])

    def derive(self, purpose: str) -> KeyRing:
        """A ring of sub-keys for one purpose (QR tokens, API tokens), with the same key ids."""
        return KeyRing(
            {
                kid: hmac.new(secret, purpose.encode(), hashlib.sha256).digest()
                for kid, secret in self.keys.items()
            },
            self.current,
        )
