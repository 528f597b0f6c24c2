"""Errors meaning a store does not answer: the HTTP API answers them 503, the CLI one line."""

from __future__ import annotations

import psycopg
import redis.exceptions
from eventsourcing.persistence import InterfaceError, OperationalError

STORES_DOWN: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
"""The event store or Redis does not answer (connection refused, pool timeout)."""
