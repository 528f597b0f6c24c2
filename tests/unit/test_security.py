from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

import jwt
import pytest
import redis
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from api.http.problems import PROBLEM_MEDIA_TYPE, install_problem_handlers
from api.http.roles import Role
from api.http.security import (
    ACCESS_TOKEN_PURPOSE,
    AuthenticationError,
    AuthorizationError,
    MemoryRevocationList,
    Principal,
    RedisRevocationList,
    TokenIssuer,
    TokenVerifier,
    ensure_checkpoint,
    ensure_own_record,
    ensure_unit,
    get_principal,
    require,
)
from domain.errors import InvalidIdNumber, InvalidValue
from infrastructure.keys import KeyRing

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
SECRET_1 = "k1:first-secret-of-sixteen-plus-bytes"
SECRET_2 = "k2:second-secret-of-sixteen-plus-bytes"
CITIZEN_ID = "001204000123"


class Clock:
    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.from_setting(SECRET_1)


@pytest.fixture
def issuer(keyring: KeyRing, clock: Clock) -> TokenIssuer:
    return TokenIssuer(keyring, now=clock)


@pytest.fixture
def verifier(keyring: KeyRing, clock: Clock) -> TokenVerifier:
    return TokenVerifier(keyring, revocations=MemoryRevocationList(now=clock), now=clock)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _access_key(setting: str = SECRET_1) -> tuple[str, bytes]:
    ring = KeyRing.from_setting(setting)
    return ring.current_kid, ring.derive(ACCESS_TOKEN_PURPOSE)


def _claims(**overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "iss": "vaxreg",
        "sub": "admin-1",
        "role": "admin",
        "scope": "",
        "jti": "j1",
        "iat": int(T0.timestamp()),
        "exp": int((T0 + timedelta(hours=1)).timestamp()),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_round_trip_keeps_every_claim(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.mint(Role.MEDICAL_STAFF, "nurse-7", unit="U01", scopes=["identifiers"])
    principal = verifier.verify(token)
    assert principal.subject == "nurse-7"
    assert principal.role is Role.MEDICAL_STAFF
    assert principal.unit == "U01"
    assert principal.checkpoint is None
    assert principal.scopes == frozenset({"identifiers"})
    assert principal.has_scope("identifiers")
    assert principal.expires_at == T0 + timedelta(hours=8)
    assert jwt.get_unverified_header(token)["kid"] == "k1"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == "vaxreg"
    assert claims["jti"] == principal.token_id


def test_each_token_has_its_own_id(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    first, second = (issuer.mint(Role.CITIZEN, CITIZEN_ID) for _ in range(2))
    assert verifier.verify(first).token_id != verifier.verify(second).token_id


@pytest.mark.parametrize(
    ("role", "subject", "unit", "checkpoint", "error"),
    [
        (Role.MEDICAL_STAFF, "nurse-7", None, None, InvalidValue),
        (Role.CHECKPOINT_OFFICER, "officer-2", None, None, InvalidValue),
        (Role.ADMIN, "admin-1", "U01", None, InvalidValue),
        (Role.AUDITOR, "auditor-1", None, "CP-9", InvalidValue),
        (Role.CITIZEN, "12345", None, None, InvalidIdNumber),
        (Role.CITIZEN, "999204000123", None, None, InvalidIdNumber),
        (Role.INTEGRATOR, "", None, None, InvalidValue),
    ],
)
def test_mint_refuses_inconsistent_principals(
    issuer: TokenIssuer,
    role: Role,
    subject: str,
    unit: str | None,
    checkpoint: str | None,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        issuer.mint(role, subject, unit=unit, checkpoint=checkpoint)


def test_mint_refuses_non_positive_ttl_and_spaced_scopes(issuer: TokenIssuer) -> None:
    with pytest.raises(InvalidValue):
        issuer.mint(Role.ADMIN, "admin-1", ttl=timedelta(0))
    with pytest.raises(InvalidValue):
        issuer.mint(Role.INTEGRATOR, "partner", scopes=["two words"])


def test_expired_token_is_refused(
    issuer: TokenIssuer, verifier: TokenVerifier, clock: Clock
) -> None:
    token = issuer.mint(Role.ADMIN, "admin-1", ttl=timedelta(minutes=5))
    clock.at = T0 + timedelta(minutes=5, seconds=29)
    verifier.verify(token)
    clock.at = T0 + timedelta(minutes=5, seconds=30)
    with pytest.raises(AuthenticationError, match="expired"):
        verifier.verify(token)


def test_token_from_the_future_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.mint(Role.ADMIN, "admin-1", now=T0 + timedelta(minutes=5))
    with pytest.raises(AuthenticationError, match="future"):
        verifier.verify(token)


def test_tampered_payload_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    header, payload, signature = issuer.mint(Role.CITIZEN, CITIZEN_ID).split(".")
    claims = json.loads(_unb64(payload))
    claims["role"] = "admin"
    claims["sub"] = "admin-1"
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    with pytest.raises(AuthenticationError, match="signature"):
        verifier.verify(forged)


def test_tampered_signature_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    header, payload, signature = issuer.mint(Role.ADMIN, "admin-1").split(".")
    raw = bytearray(_unb64(signature))
    raw[0] ^= 1
    with pytest.raises(AuthenticationError, match="signature"):
        verifier.verify(".".join([header, payload, _b64(bytes(raw))]))


def test_unknown_kid_is_refused(verifier: TokenVerifier) -> None:
    _, secret = _access_key()
    token = jwt.encode(_claims(), secret, algorithm="HS256", headers={"kid": "elsewhere"})
    with pytest.raises(AuthenticationError, match="unknown key"):
        verifier.verify(token)


def test_missing_kid_is_refused(verifier: TokenVerifier) -> None:
    _, secret = _access_key()
    with pytest.raises(AuthenticationError, match="unknown key"):
        verifier.verify(jwt.encode(_claims(), secret, algorithm="HS256"))


def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode())
    payload = _b64(json.dumps(_claims(role="admin")).encode())
    with pytest.raises(AuthenticationError, match="HS256"):
        verifier.verify(f"{header}.{payload}.")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_other_hmac_algorithm_is_refused(verifier: TokenVerifier) -> None:
    kid, secret = _access_key()
    token = jwt.encode(_claims(), secret, algorithm="HS512", headers={"kid": kid})
    with pytest.raises(AuthenticationError, match="HS256"):
        verifier.verify(token)


def test_wrong_key_under_a_known_kid_is_refused(verifier: TokenVerifier) -> None:
    other = TokenIssuer(KeyRing.from_setting("k1:somebody-elses-secret-value"), now=lambda: T0)
    with pytest.raises(AuthenticationError, match="signature"):
        verifier.verify(other.mint(Role.ADMIN, "admin-1"))


def test_key_derived_for_another_purpose_is_refused(
    keyring: KeyRing, verifier: TokenVerifier
) -> None:
    qr_key = keyring.derive("declaration-qr")
    token = jwt.encode(_claims(), qr_key, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(AuthenticationError, match="signature"):
        verifier.verify(token)


@pytest.mark.parametrize(
    "claims",
    [
        _claims(jti=None),
        _claims(exp=None),
        _claims(iss="someone-else"),
        _claims(role="superuser"),
        _claims(role="medical_staff"),
        _claims(exp="tomorrow"),
        _claims(unit=7),
        _claims(role="citizen", sub="not-an-id"),
    ],
)
def test_missing_or_bad_claims_are_refused(
    verifier: TokenVerifier, claims: dict[str, object]
) -> None:
    kid, secret = _access_key()
    token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})
    with pytest.raises(AuthenticationError):
        verifier.verify(token)


def test_garbage_and_huge_tokens_are_refused(verifier: TokenVerifier) -> None:
    for token in ["", "abc", "a.b.c", "x" * 5000]:
        with pytest.raises(AuthenticationError):
            verifier.verify(token)


def test_revoked_token_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.mint(Role.CITIZEN, CITIZEN_ID)
    other = issuer.mint(Role.CITIZEN, CITIZEN_ID)
    verifier.revoke(verifier.verify(token))
    with pytest.raises(AuthenticationError, match="revoked"):
        verifier.verify(token)
    verifier.verify(other)


def test_memory_revocations_are_forgotten_after_expiry(clock: Clock) -> None:
    revocations = MemoryRevocationList(now=clock)
    revocations.revoke("j1", until=T0 + timedelta(minutes=1))
    revocations.revoke("j-past", until=T0 - timedelta(minutes=1))
    assert revocations.is_revoked("j1")
    assert not revocations.is_revoked("j-past")
    clock.at = T0 + timedelta(minutes=2)
    assert not revocations.is_revoked("j1")


def test_rotation_keeps_old_tokens_until_the_old_key_leaves(clock: Clock) -> None:
    old_token = TokenIssuer(KeyRing.from_setting(SECRET_1), now=clock).mint(Role.ADMIN, "a-1")
    rotated = KeyRing.from_setting(f"{SECRET_2},{SECRET_1}")
    assert rotated.kids == ("k2", "k1")
    verifier = TokenVerifier(rotated, revocations=MemoryRevocationList(), now=clock)
    assert verifier.verify(old_token).subject == "a-1"
    new_token = TokenIssuer(rotated, now=clock).mint(Role.ADMIN, "a-2")
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    assert verifier.verify(new_token).subject == "a-2"

    retired = TokenVerifier(
        KeyRing.from_setting(SECRET_2), revocations=MemoryRevocationList(), now=clock
    )
    assert retired.verify(new_token).subject == "a-2"
    with pytest.raises(AuthenticationError, match="unknown key"):
        retired.verify(old_token)


def test_single_secret_gets_a_stable_kid_and_repr_hides_it() -> None:
    secret = "a-single-secret-without-colons"
    ring = KeyRing.from_setting(f"  {secret}\n")
    assert ring.kids == (KeyRing.from_setting(secret).current_kid,)
    assert secret not in ring.current_kid
    assert secret not in repr(ring)
    assert ring.secret(ring.current_kid) == secret.encode()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("", "shorter"),
        ("short", "shorter"),
        ("k1:short", "shorter"),
        ("k1:first-secret-of-sixteen,k1:second-secret-of-sixteen", "unique"),
        (":first-secret-of-sixteen", "unique"),
        ("k1:first-secret-of-sixteen,oops", "kid:secret"),
    ],
)
def test_bad_key_settings_are_refused(setting: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeyRing.from_setting(setting)


def test_derived_keys_differ_by_purpose_and_key() -> None:
    ring = KeyRing.from_setting(f"{SECRET_2},{SECRET_1}")
    assert ring.derive("qr") == ring.derive("qr", "k2")
    assert ring.derive("qr") != ring.derive("qr", "k1")
    assert ring.derive("qr") != ring.derive("access-token")
    derived = ring.derived("qr")
    assert derived.kids == ring.kids
    assert derived.secret("k1") == ring.derive("qr", "k1")
    with pytest.raises(ValueError, match="purpose"):
        ring.derive("")


def _principal(
    role: Role, subject: str = "x-1", unit: str | None = None, checkpoint: str | None = None
) -> Principal:
    return Principal(
        subject=subject,
        role=role,
        token_id="t",
        expires_at=T0 + timedelta(hours=1),
        unit=unit,
        checkpoint=checkpoint,
    )


def test_object_checks() -> None:
    nurse = _principal(Role.MEDICAL_STAFF, unit="U01")
    ensure_unit(nurse, "U01")
    with pytest.raises(AuthorizationError):
        ensure_unit(nurse, "U02")
    ensure_unit(_principal(Role.ADMIN), "U02")

    officer = _principal(Role.CHECKPOINT_OFFICER, checkpoint="CP-1")
    ensure_checkpoint(officer, "CP-1")
    with pytest.raises(AuthorizationError):
        ensure_checkpoint(officer, "CP-2")

    citizen = _principal(Role.CITIZEN, CITIZEN_ID)
    ensure_own_record(citizen, CITIZEN_ID)
    with pytest.raises(AuthorizationError):
        ensure_own_record(citizen, "001204000124")
    ensure_own_record(nurse, "001204000124")


@pytest.fixture
def client(issuer: TokenIssuer, verifier: TokenVerifier) -> TestClient:
    app = FastAPI()
    app.state.token_verifier = verifier

    @app.get("/me")
    def me(principal: Annotated[Principal, Depends(get_principal)]) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.get("/audit", dependencies=[Depends(require(Role.AUDITOR, Role.ADMIN))])
    def audit() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/units/{unit}/doses")
    def record(
        unit: str, principal: Annotated[Principal, Depends(require(Role.MEDICAL_STAFF))]
    ) -> dict[str, str]:
        ensure_unit(principal, unit)
        return {"unit": unit}

    @app.get("/citizens/{id_number}")
    def citizen(
        id_number: str, principal: Annotated[Principal, Depends(require(Role.CITIZEN))]
    ) -> dict[str, str]:
        ensure_own_record(principal, id_number)
        return {"id_number": id_number}

    install_problem_handlers(app)
    return TestClient(app)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_http_without_token_is_401_with_challenge(client: TestClient) -> None:
    for headers in [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}]:
        response = client.get("/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="vaxreg"'
        assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert response.json()["code"] == "unauthenticated"


def test_http_bad_token_is_401_invalid_token(client: TestClient) -> None:
    response = client.get("/me", headers=_bearer("not.a.token"))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.json()["detail"] == "the token is malformed"


def test_http_roles(client: TestClient, issuer: TokenIssuer) -> None:
    citizen = issuer.mint(Role.CITIZEN, CITIZEN_ID)
    auditor = issuer.mint(Role.AUDITOR, "auditor-1")
    assert client.get("/me", headers=_bearer(citizen)).json() == {"subject": CITIZEN_ID}
    assert client.get("/audit", headers=_bearer(auditor)).status_code == 200

    response = client.get("/audit", headers=_bearer(citizen))
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert body["code"] == "forbidden"
    assert body["allowed_roles"] == ["admin", "auditor"]


def test_http_object_checks(client: TestClient, issuer: TokenIssuer) -> None:
    nurse = _bearer(issuer.mint(Role.MEDICAL_STAFF, "nurse-7", unit="U01"))
    assert client.post("/units/U01/doses", headers=nurse).status_code == 200
    response = client.post("/units/U02/doses", headers=nurse)
    assert response.status_code == 403
    assert response.json()["requested_unit"] == "U02"

    citizen = _bearer(issuer.mint(Role.CITIZEN, CITIZEN_ID))
    assert client.get(f"/citizens/{CITIZEN_ID}", headers=citizen).status_code == 200
    assert client.get("/citizens/001204000124", headers=citizen).status_code == 403


def test_principal_can_be_overridden() -> None:
    app = FastAPI()

    @app.get("/me")
    def me(principal: Annotated[Principal, Depends(get_principal)]) -> dict[str, str]:
        return {"subject": principal.subject}

    app.dependency_overrides[get_principal] = lambda: _principal(Role.ADMIN, "stub")
    assert TestClient(app).get("/me").json() == {"subject": "stub"}


@pytest.fixture
def redis_client(redis_url: str, redis_prefix: str) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(redis_url)
    yield client, f"{redis_prefix}revoked:"
    client.close()


@pytest.mark.redis
def test_redis_revocation_list(redis_client: tuple[redis.Redis, str]) -> None:
    client, prefix = redis_client
    revocations = RedisRevocationList(client, prefix=prefix)
    until = datetime.now(UTC) + timedelta(minutes=10)
    revocations.revoke("j1", until)
    revocations.revoke("j-past", datetime.now(UTC) - timedelta(seconds=1))
    assert revocations.is_revoked("j1")
    assert not revocations.is_revoked("j2")
    assert not revocations.is_revoked("j-past")
    ttl_ms = client.pttl(prefix + "j1")
    assert isinstance(ttl_ms, int)
    assert 0 < ttl_ms <= 10 * 60 * 1000 + 1
