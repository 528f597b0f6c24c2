"""Settings from environment variables (documented in the README).

With nothing set, vaxreg runs embedded: SQLite files and generated keys under `./var/`,
read models in process. With PostgreSQL configured, the secret and id keys must be given.
Settings are checked here where they can be, so a wrong one stops the process with a
message naming it.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

from redis import ConnectionPool

from domain.checkpoint_policy import DEFAULT_POLICY, Policy, load_policy
from infrastructure.keys import KeyRing
from projections.pipelined import PipelinedRedis
from projections.stores import check_namespace

CONTEXTS = ("population", "mobility", "immunization")


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    redis_namespace: str
    secret_keys: KeyRing
    id_key: bytes
    encryption_key: str | None
    data_dir: Path
    declaration_validity: timedelta
    pool_size: int
    rebuild_citizens: int = 200_000
    """Citizens a read-model rebuild holds in memory at most (1-1.5 KB each)."""
    checkpoint_policy: Policy = DEFAULT_POLICY
    """The verdict rules the read models apply (`VAXREG_CHECKPOINT_POLICY`, a JSON file)."""

    @property
    def uses_postgres(self) -> bool:
        return self.database_url.startswith(("postgresql://", "postgres://"))

    def application_env(self, context: str, create_tables: bool) -> dict[str, str]:
        """The eventsourcing library's settings for one context's Application."""
        env: dict[str, str] = {"CREATE_TABLE": "y" if create_tables else "n"}
        if self.encryption_key:
            env["CIPHER_TOPIC"] = "eventsourcing.cipher:AESCipher"
            env["CIPHER_KEY"] = self.encryption_key
            env["COMPRESSOR_TOPIC"] = "eventsourcing.compressor:ZlibCompressor"
        if self.uses_postgres:
            url = urlsplit(self.database_url)
            env |= {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "APPLICATION_RECORDER_TOPIC": "infrastructure.recorders:OneTripRecorder",
                "POSTGRES_DBNAME": url.path.lstrip("/") or "postgres",
                "POSTGRES_HOST": url.hostname or "127.0.0.1",
                "POSTGRES_PORT": str(url.port or 5432),
                "POSTGRES_USER": unquote(url.username or "postgres"),
                "POSTGRES_PASSWORD": unquote(url.password or ""),
                "POSTGRES_POOL_SIZE": str(self.pool_size),
                "POSTGRES_MAX_OVERFLOW": str(self.pool_size * 2),
                "POSTGRES_CONNECT_TIMEOUT": "3",
                "POSTGRES_LOCK_TIMEOUT": "5",
                "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "10",
            }
        else:
            directory = Path(self.database_url.removeprefix("sqlite:///"))
            directory.mkdir(parents=True, exist_ok=True)
            env |= {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(directory / f"{context}.sqlite3"),
                "SQLITE_LOCK_TIMEOUT": "10",
            }
        return env


class SettingsError(ValueError):
    """A setting is missing or unreadable; the message names the variable."""


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    data_dir = Path(env.get("VAXREG_DATA_DIR", "var"))
    database_url = env.get("VAXREG_DATABASE_URL") or f"sqlite:///{data_dir / 'events'}"
    if not database_url.startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise SettingsError(
            "VAXREG_DATABASE_URL is postgresql://user@host:port/db or sqlite:///dir"
        )
    embedded = database_url.startswith("sqlite:///")
    secret = env.get("VAXREG_SECRET_KEY") or _kept_secret(data_dir, "secret_key", embedded)
    id_key = env.get("VAXREG_ID_KEY") or _kept_secret(data_dir, "id_key", embedded)
    try:
        secret_keys = KeyRing.from_setting(secret)
    except ValueError as error:
        raise SettingsError(f"VAXREG_SECRET_KEY: {error}") from error
    return Settings(
        database_url=database_url,
        redis_url=_redis_url(env.get("VAXREG_REDIS_URL") or None),
        redis_namespace=_namespace(env.get("VAXREG_REDIS_NAMESPACE", "vaxreg")),
        secret_keys=secret_keys,
        id_key=id_key.encode(),
        encryption_key=env.get("VAXREG_ENCRYPTION_KEY") or None,
        data_dir=data_dir,
        declaration_validity=timedelta(hours=_number(env, "VAXREG_DECLARATION_HOURS", 72.0)),
        pool_size=int(_number(env, "VAXREG_POSTGRES_POOL_SIZE", 2, whole=True)),
        rebuild_citizens=int(_number(env, "VAXREG_REBUILD_CITIZENS", 200_000, whole=True)),
        checkpoint_policy=_policy(env.get("VAXREG_CHECKPOINT_POLICY") or None),
    )


def _redis_url(url: str | None) -> str | None:
    """`url` if both Redis clients (redis-py's and the API's pipelined one) can use it."""
    if url is None:
        return None
    try:
        ConnectionPool.from_url(url)
        PipelinedRedis.from_url(url)
    except ValueError as error:
        raise SettingsError(
            f"VAXREG_REDIS_URL is redis://host:port/db, rediss://... or unix://path, not {url!r}"
        ) from error
    return url


def _namespace(namespace: str) -> str:
    try:
        return check_namespace(namespace)
    except ValueError as error:
        raise SettingsError(f"VAXREG_REDIS_NAMESPACE: {error}") from error


def _policy(path: str | None) -> Policy:
    """The checkpoint policy in the file at `path`, the default one when unset."""
    if path is None:
        return DEFAULT_POLICY
    try:
        return load_policy(Path(path))
    except OSError as error:
        raise SettingsError(f"VAXREG_CHECKPOINT_POLICY: cannot read {path}: {error}") from error
    except (ValueError, KeyError, TypeError) as error:
        raise SettingsError(
            f"VAXREG_CHECKPOINT_POLICY: {path} is not a checkpoint policy: {error!r}"
        ) from error


def _number(env: Mapping[str, str], name: str, default: float, *, whole: bool = False) -> float:
    """A positive number from `env`, `default` when unset."""
    text = env.get(name)
    if text is None:
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = 0
    if not 0 < value < math.inf:
        kind = "a positive whole number" if whole else "a positive number"
        raise SettingsError(f"{name} must be {kind}, not {text!r}")
    return value


def _kept_secret(data_dir: Path, name: str, embedded: bool) -> str:
    """Generate a key once for the embedded default and keep it; servers must be given one."""
    if not embedded:
        raise SettingsError(f"VAXREG_{name.upper()} must be set when using PostgreSQL")
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()
