"""The one place that opens clients, retries transient failures, and turns redis-py errors into ours.

Standalone clients only today; `open_client` is the seam where a cluster client will be chosen from the identity.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis import exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from migrate.config import ConnectionSettings, Endpoint
from migrate.errors import (
    AuthError,
    ConnectError,
    MigrateError,
    MigrationError,
    PermissionDeniedError,
    TargetOutOfMemoryError,
    TlsError,
    ValueTooBigError,
)
from migrate.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")

TRANSIENT = (rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError, ConnectionResetError)


def client_kwargs(endpoint: Endpoint, settings: ConnectionSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "username": endpoint.username,
        "password": endpoint.password,
        "db": endpoint.db,
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": settings.socket_timeout,
        "client_name": "migrate",
        # redis-py retries internally by default; retries are ours (bounded, logged), so its own are off.
        "retry": Retry(NoBackoff(), 0),
    }
    if endpoint.path:
        kwargs["unix_socket_path"] = endpoint.path
        return kwargs
    kwargs.update(host=endpoint.host, port=endpoint.port)
    if endpoint.uses_tls:
        kwargs.update(
            ssl=True,
            ssl_ca_certs=endpoint.tls.ca_file,
            ssl_certfile=endpoint.tls.cert_file,
            ssl_keyfile=endpoint.tls.key_file,
            ssl_cert_reqs="required" if endpoint.tls.verify else "none",
            ssl_check_hostname=endpoint.tls.verify,
        )
    return kwargs


def raw_connection(endpoint: Endpoint, settings: ConnectionSettings) -> Any:
    """An unconnected redis-py connection of the right class (TCP, TLS or unix socket), speaking RESP2: scores and
    doubles stay the server's exact text, maps stay flat arrays. redis.Redis picks the class from the arguments; a
    ConnectionPool built from them directly would not (its TLS and unix arguments are those of redis.Redis)."""
    return redis.Redis(**client_kwargs(endpoint, settings), protocol=2).connection_pool.make_connection()


def open_client(endpoint: Endpoint, settings: ConnectionSettings | None = None, role: str = "server",
                db: int | None = None) -> redis.Redis:
    """Open a client and prove it works with PING (bounded retries); raise our errors with hints."""
    settings = settings or ConnectionSettings()
    if db is not None:
        endpoint = endpoint.with_db(db)
    client = redis.Redis(**client_kwargs(endpoint, settings))
    # The probe uses the connect timeout as its read timeout too: a host that accepts but never answers must not
    # hang the tool for the (longer) operation timeout.
    probe = redis.Redis(**{**client_kwargs(endpoint, settings), "socket_timeout": settings.connect_timeout})
    try:
        with_retries(probe.ping, settings, f"connect to {role} {endpoint}", endpoint, role)
    finally:
        probe.close()
    return client


def with_retries(fn: Callable[[], T], settings: ConnectionSettings, what: str, endpoint: Endpoint | None = None,
                 role: str = "server") -> T:
    """Run fn, retrying transient errors a bounded number of times with backoff; translate the final error."""
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("retrying", what=what, attempt=state.attempt_number, error=_short(exc))

    retrying = Retrying(
        stop=stop_after_attempt(settings.retries),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        retry=retry_if_exception_type(TRANSIENT),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(fn)
    except rex.RedisError as exc:
        raise translate(exc, endpoint, role) from exc
    except OSError as exc:
        raise translate(exc, endpoint, role) from exc


def _short(exc: BaseException | None) -> str:
    return " ".join(str(exc).split())[:200] if exc else ""


def translate(exc: BaseException, endpoint: Endpoint | None = None, role: str = "server") -> MigrateError:
    """Map a redis-py / socket error to one of ours, with a hint. The message never contains the password."""
    where = f"{role} {endpoint}" if endpoint else role
    text = _short(exc)
    if isinstance(exc, MigrateError):
        return exc
    if isinstance(exc, rex.AuthenticationError | rex.AuthenticationWrongNumberOfArgsError) or _starts(
        text, "WRONGPASS", "NOAUTH", "invalid password", "invalid username-password"
    ):
        return AuthError(f"authentication failed for {where}: {_scrub(text, endpoint)}")
    if _starts(text, "NOPERM") or isinstance(exc, rex.NoPermissionError):
        return PermissionDeniedError(f"permission denied on {where}: {_scrub(text, endpoint)}")
    if _starts(text, "OOM") or isinstance(exc, rex.OutOfMemoryError):  # redis-py strips the OOM prefix
        return TargetOutOfMemoryError(f"{where} is out of memory (maxmemory reached): {text}")
    if "exceeds maximum allowed size" in text:  # APPEND/SETRANGE/... past the target's proto-max-bulk-len
        return ValueTooBigError(f"{where} cannot hold the value: {text}")
    if _starts(text, "READONLY"):
        return MigrationError(f"{where} is a read-only replica: {text}",
                              "point --target at the primary, or run REPLICAOF NO ONE on it")
    if isinstance(exc, ssl.SSLError) or "SSL" in text or "certificate" in text.lower():
        return TlsError(f"TLS handshake with {where} failed: {text}")
    if isinstance(exc, rex.TimeoutError | socket.timeout | TimeoutError) or "Timeout" in text or "timed out" in text:
        connecting = "connect" in text.lower()  # redis-py: "Timeout connecting to server" vs "Timeout reading ..."
        return ConnectError(f"{where} did not answer in time: {text}",
                            "check the host is reachable and not overloaded; raise "
                            + ("--connect-timeout" if connecting else "--socket-timeout (a slow or blocked server)"))
    if isinstance(exc, rex.ConnectionError | OSError):
        if "Name or service not known" in text or "nodename nor servname" in text or "resolve" in text:
            return ConnectError(f"cannot resolve the host of {where}", "check the host name in the URL")
        if "refused" in text.lower():
            return ConnectError(f"connection refused by {where}", "check the port and that the server is running")
        return ConnectError(f"cannot connect to {where}: {_scrub(text, endpoint)}")
    return MigrationError(f"{where} returned an error: {_scrub(text, endpoint)}")


def _starts(text: str, *prefixes: str) -> bool:
    return any(p.lower() in text.lower()[: len(p) + 40] for p in prefixes)


def _scrub(text: str, endpoint: Endpoint | None) -> str:
    if endpoint is not None and endpoint.password:
        text = text.replace(endpoint.password, "***")
    return text
