"""Bearer tokens, roles and per-object access checks for the HTTP API.

Access tokens are HS256 JWTs signed with a key derived from the `KeyRing` (the ring built
from ``VAXREG_SECRET_KEY``), so a key derived for another purpose (QR tokens of health
declarations: ``keyring.derived("declaration-qr")``) can never pass as an access token.

Wiring, in the app factory::

    keyring = KeyRing.from_setting(settings.secret_key)
    app.state.token_verifier = TokenVerifier(
        keyring, revocations=RedisRevocationList(redis_client, prefix="vaxreg:revoked:")
    )

Routes then depend on `get_principal`, or on ``require(Role.ADMIN, ...)`` for a role
check, and call `ensure_unit` / `ensure_own_record` for checks on the object itself.
They verify with `TokenVerifier.verify_recent`, which remembers a verified token for
`REMEMBER_SECONDS`: a token revoked by another process is refused within that time
(revoked through the same verifier, at once). These dependencies are ``async``, so
FastAPI runs them on the event loop, not in its threadpool; only a token not remembered
goes to a worker thread (`verify_without_blocking`), for its revocation lookup.
Tests may instead set ``app.dependency_overrides[get_token_verifier]`` or
``app.dependency_overrides[get_principal]`` for the routes depending on them; commands'
`api.http.dependencies.caller` verifies with `principal_of` in a dependency of its own.
Errors are `ProblemError`s, rendered by `api.http.problems.install_problem_handlers`
(401 carries ``WWW-Authenticate: Bearer``).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Protocol

import jwt
import redis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from api.http.problems import ProblemError, scope_header
from api.http.roles import Role
from domain.errors import DomainError, InvalidValue
from domain.identity import NationalId
from infrastructure.keys import KeyRing

Clock = Callable[[], datetime]

ISSUER = "vaxreg"
ALGORITHM = "HS256"
ACCESS_TOKEN_PURPOSE = "access-token"
IDENTIFIERS_SCOPE = "identifiers"
"""Lets an integrator see direct identifiers (ID numbers, names) in the event feed."""
MAX_TOKEN_CHARS = 4096
REQUIRED_CLAIMS = ("sub", "role", "jti", "iat", "exp", "iss")
REMEMBER_SECONDS = 2.0
"""How long `TokenVerifier.verify_recent` trusts an earlier verification of a token."""
MAX_REMEMBERED = 10_000


def utc_now() -> datetime:
    return datetime.now(UTC)


class AuthenticationError(ProblemError):
    """No credentials, or credentials that cannot be trusted (401)."""

    status = 401
    code = "unauthenticated"

    def __init__(self, detail: str, *, token_presented: bool = True) -> None:
        challenge = f'Bearer realm="{ISSUER}"'
        if token_presented:
            challenge += ', error="invalid_token"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class AuthorizationError(ProblemError):
    """Authenticated, but not allowed to do this (403)."""

    status = 403
    code = "forbidden"


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who is calling, as established by a verified token.

    Medical staff always have a `unit`, checkpoint officers a `checkpoint`, and nobody
    else has either; a citizen's `subject` is their ID number.
    """

    subject: str
    role: Role
    token_id: str
    expires_at: datetime
    unit: str | None = None
    checkpoint: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        object.__setattr__(self, "scopes", frozenset(self.scopes))
        if not self.subject:
            raise InvalidValue("a principal needs a subject", field="subject")
        if (self.role is Role.MEDICAL_STAFF) != bool(self.unit):
            raise InvalidValue(
                "medical staff, and only they, belong to a medical unit", field="unit"
            )
        if (self.role is Role.CHECKPOINT_OFFICER) != bool(self.checkpoint):
            raise InvalidValue(
                "checkpoint officers, and only they, are posted at a checkpoint",
                field="checkpoint",
            )
        if self.role is Role.CITIZEN:
            NationalId(self.subject)
        if any(not scope or " " in scope for scope in self.scopes):
            raise InvalidValue("a scope is a non-empty word without spaces", field="scopes")

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class TokenIssuer:
    def __init__(self, keyring: KeyRing, *, now: Clock = utc_now) -> None:
        self._keys = keyring.derived(ACCESS_TOKEN_PURPOSE)
        self._now = now

    def mint(
        self,
        role: Role,
        subject: str,
        unit: str | None = None,
        checkpoint: str | None = None,
        scopes: Iterable[str] = (),
        ttl: timedelta = timedelta(hours=8),
        now: datetime | None = None,
    ) -> str:
        """A signed access token; raises a `DomainError` for an inconsistent principal."""
        if ttl <= timedelta(0):
            raise InvalidValue("a token's lifetime must be positive", field="ttl")
        issued = (now or self._now()).replace(microsecond=0)
        principal = Principal(
            subject=subject,
            role=role,
            token_id=secrets.token_urlsafe(16),
            expires_at=issued + ttl,
            unit=unit,
            checkpoint=checkpoint,
            scopes=frozenset(scopes),
        )
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": principal.subject,
            "role": principal.role.value,
            "scope": " ".join(sorted(principal.scopes)),
            "jti": principal.token_id,
            "iat": int(issued.timestamp()),
            "exp": int(principal.expires_at.timestamp()),
        }
        if unit:
            claims["unit"] = unit
        if checkpoint:
            claims["checkpoint"] = checkpoint
        kid = self._keys.current_kid
        secret = self._keys.secret(kid)
        assert secret is not None
        return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kid})


class RevocationList(Protocol):
    def revoke(self, jti: str, until: datetime) -> None:
        """Refuse token `jti` from now on; forgetting it after `until` (its expiry) is fine."""

    def is_revoked(self, jti: str) -> bool: ...


class MemoryRevocationList:
    """For tests and single-process runs."""

    def __init__(self, *, now: Clock = utc_now) -> None:
        self._now = now
        self._until: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def revoke(self, jti: str, until: datetime) -> None:
        with self._lock:
            now = self._now()
            self._until = {k: t for k, t in self._until.items() if t > now}
            if until > now:
                self._until[jti] = until

    def is_revoked(self, jti: str) -> bool:
        with self._lock:
            until = self._until.get(jti)
        return until is not None and until > self._now()


class RedisRevocationList:
    """One key per revoked token id, expiring when the token would have."""

    def __init__(
        self, client: redis.Redis, *, prefix: str = "vaxreg:revoked:", now: Clock = utc_now
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._now = now

    def revoke(self, jti: str, until: datetime) -> None:
        if until > self._now():
            self._client.set(self._prefix + jti, b"1", pxat=int(until.timestamp() * 1000) + 1)

    def is_revoked(self, jti: str) -> bool:
        return bool(self._client.exists(self._prefix + jti))


class TokenVerifier:
    def __init__(
        self,
        keyring: KeyRing,
        *,
        revocations: RevocationList,
        now: Clock = utc_now,
        leeway: timedelta = timedelta(seconds=30),
    ) -> None:
        self._keys = keyring.derived(ACCESS_TOKEN_PURPOSE)
        self.revocations = revocations
        self._now = now
        self._leeway = leeway
        self._remembered: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str, now: datetime | None = None) -> Principal:
        """The principal of a valid token; `AuthenticationError` for anything else."""
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthenticationError("the token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("the token is malformed") from None
        if header.get("alg") != ALGORITHM:
            raise AuthenticationError(f"tokens must be signed with {ALGORITHM}")
        kid = header.get("kid")
        secret = self._keys.secret(kid) if isinstance(kid, str) else None
        if secret is None:
            raise AuthenticationError("the token was signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise AuthenticationError("the token signature is invalid") from None
        except jwt.PyJWTError:
            raise AuthenticationError("the token is invalid") from None
        principal = self._principal(claims)
        moment = now or self._now()
        if moment >= principal.expires_at + self._leeway:
            raise AuthenticationError("the token has expired")
        if claims["iat"] > (moment + self._leeway).timestamp():
            raise AuthenticationError("the token was issued in the future")
        if self.revocations.is_revoked(principal.token_id):
            raise AuthenticationError("the token has been revoked")
        return principal

    def verify_recent(self, token: str) -> Principal:
        """`verify`, trusting a verification of the same token in the last
        `REMEMBER_SECONDS` (its expiry is still checked): no signature check and no
        revocation lookup on repeats."""
        principal = self.remembered(token)
        if principal is None:
            principal = self.verify(token)
            if len(self._remembered) >= MAX_REMEMBERED:
                self._remembered.clear()
            self._remembered[token] = (principal, time.monotonic() + REMEMBER_SECONDS)
        return principal

    def remembered(self, token: str) -> Principal | None:
        """The principal of a token verified in the last `REMEMBER_SECONDS`, if unexpired;
        None if it must be verified (which may ask the revocation list)."""
        found = self._remembered.get(token)
        if found is None or found[1] < time.monotonic():
            return None
        if self._now() >= found[0].expires_at + self._leeway:
            raise AuthenticationError("the token has expired")
        return found[0]

    def revoke(self, principal: Principal) -> None:
        self.revocations.revoke(principal.token_id, principal.expires_at)
        self._remembered = {
            token: entry
            for token, entry in self._remembered.items()
            if entry[0].token_id != principal.token_id
        }

    @staticmethod
    def _principal(claims: dict[str, Any]) -> Principal:
        strings = ("sub", "role", "jti", "scope", "unit", "checkpoint")
        numbers = ("iat", "exp")
        if any(not isinstance(claims.get(name, ""), str) for name in strings) or any(
            type(claims[name]) is not int for name in numbers
        ):
            raise AuthenticationError("the token claims have the wrong types")
        try:
            return Principal(
                subject=claims["sub"],
                role=Role(claims["role"]),
                token_id=claims["jti"],
                expires_at=datetime.fromtimestamp(claims["exp"], UTC),
                unit=claims.get("unit"),
                checkpoint=claims.get("checkpoint"),
                scopes=frozenset(claims.get("scope", "").split()),
            )
        except (ValueError, OverflowError, OSError, DomainError) as exc:
            raise AuthenticationError("the token claims are inconsistent") from exc


_bearer = HTTPBearer(auto_error=False, bearerFormat="JWT")


def token_verifier_of(request: Request) -> TokenVerifier:
    """The verifier the app factory put in ``app.state.token_verifier``."""
    verifier = getattr(request.app.state, "token_verifier", None)
    if not isinstance(verifier, TokenVerifier):
        raise RuntimeError("app.state.token_verifier is not set to a TokenVerifier")
    return verifier


async def get_token_verifier(request: Request) -> TokenVerifier:
    return token_verifier_of(request)


async def verify_without_blocking(verifier: TokenVerifier, token: str) -> Principal:
    """`TokenVerifier.verify_recent` from the event loop: a remembered token at once, any
    other in a worker thread, as its revocation lookup may wait on Redis."""
    principal = verifier.remembered(token)
    if principal is None:
        principal = await run_in_threadpool(verifier.verify_recent, token)
    return principal


async def bearer_principal(scope: Scope, verifier: TokenVerifier) -> Principal:
    """The principal of the bearer token of a request served ahead of FastAPI's
    dependencies (read off its ASGI scope as `HTTPBearer` reads it); a 401 without one."""
    scheme, _, token = (scope_header(scope, b"authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("a bearer token is required", token_presented=False)
    return await verify_without_blocking(verifier, token)


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
"""The bearer token of a request, if any; declares the security scheme in the OpenAPI."""


async def principal_of(
    credentials: HTTPAuthorizationCredentials | None, verifier: TokenVerifier
) -> Principal:
    """The principal of the request's bearer token; a 401 without a valid one."""
    if credentials is None:
        raise AuthenticationError("a bearer token is required", token_presented=False)
    return await verify_without_blocking(verifier, credentials.credentials)


async def get_principal(
    credentials: BearerCredentials,
    verifier: Annotated[TokenVerifier, Depends(get_token_verifier)],
) -> Principal:
    return await principal_of(credentials, verifier)


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency giving the principal if its role is one of `roles`, else a 403."""
    if not roles:
        raise ValueError("require() needs at least one role")
    allowed = frozenset(roles)

    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        ensure_role(principal, allowed)
        return principal

    return dependency


def ensure_role(principal: Principal, allowed: frozenset[Role]) -> None:
    """A 403 unless the principal's role is one of `allowed`."""
    if principal.role not in allowed:
        raise AuthorizationError(
            f"the {principal.role.value} role may not do this",
            allowed_roles=sorted(role.value for role in allowed),
        )


def ensure_unit(principal: Principal, unit: str) -> None:
    """Medical staff act only for their own unit; other roles are left to `require`."""
    if principal.role is Role.MEDICAL_STAFF and principal.unit != unit:
        raise AuthorizationError(
            f"staff of unit {principal.unit} may not act for unit {unit}",
            unit=principal.unit,
            requested_unit=unit,
        )


def ensure_checkpoint(principal: Principal, checkpoint: str) -> None:
    """Checkpoint officers record only at their own checkpoint; other roles pass."""
    if principal.role is Role.CHECKPOINT_OFFICER and principal.checkpoint != checkpoint:
        raise AuthorizationError(
            f"an officer of checkpoint {principal.checkpoint} may not record at {checkpoint}",
            checkpoint=principal.checkpoint,
            requested_checkpoint=checkpoint,
        )


def ensure_own_record(principal: Principal, id_number: str) -> None:
    """A citizen reads only their own record; other roles are left to `require`."""
    if principal.role is Role.CITIZEN and principal.subject != id_number:
        raise AuthorizationError("a citizen may only access their own record")
