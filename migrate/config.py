"""Configuration: flags > MIGRATE_* environment variables > migrate.toml, merged once into frozen dataclasses.

Passwords live only in `Endpoint.password`, which is excluded from repr; every printed or logged form of an endpoint
is the redacted URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, unquote, urlsplit

from migrate.errors import ConfigError
from migrate.settings import build, group, integer, option, positive_seconds

SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class TlsOptions:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True  # verification is on unless explicitly disabled

    def check_files(self) -> None:
        for name, value in (("CA file", self.ca_file), ("client cert", self.cert_file), ("client key", self.key_file)):
            if value and not Path(value).is_file():
                raise ConfigError(f"TLS {name} not found: {value}", "give an existing file path")


@dataclass(frozen=True)
class Endpoint:
    """One server address. `str()` and `repr()` never show the password."""

    scheme: str
    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # unix socket
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    db: int = 0
    tls: TlsOptions = TlsOptions()

    @property
    def uses_tls(self) -> bool:
        return self.scheme == "rediss"

    @property
    def address(self) -> str:
        return f"unix://{self.path}" if self.path else f"{self.host}:{self.port}"

    def redacted(self) -> str:
        auth = ""
        if self.username or self.password:
            auth = f"{self.username or ''}{':***' if self.password else ''}@"
        if self.path:
            return f"unix://{auth}{self.path}?db={self.db}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}/{self.db}"

    def with_db(self, db: int) -> Endpoint:
        return Endpoint(self.scheme, self.host, self.port, self.path, self.username, self.password, db, self.tls)

    def __str__(self) -> str:
        return self.redacted()


def parse_endpoint(url: str, tls: TlsOptions = TlsOptions(), role: str = "server") -> Endpoint:
    """Parse redis://, rediss:// or unix:// URLs. Errors name the role and what is wrong, never a part of the URL: a
    password with a `/`, `?` or `#` in it splits the URL elsewhere, and its pieces would show up as a port or a path."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise ConfigError(f"malformed {role} URL: it cannot be split into its parts", _URL_HINT) from None
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"malformed {role} URL: the port is not a number from 0 to 65535", _URL_HINT) from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"malformed {role} URL: scheme must be one of {', '.join(SCHEMES)}", _URL_HINT)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    username = unquote(parts.username) if parts.username else query.get("username")
    password = unquote(parts.password) if parts.password else query.get("password")
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"malformed {role} URL: unix:// needs a socket path", _URL_HINT)
        return Endpoint("unix", path=parts.path, username=username, password=password, db=_db(query.get("db"), role))
    if not parts.hostname:
        raise ConfigError(f"malformed {role} URL: no host", _URL_HINT)
    db = _db(parts.path.lstrip("/") or query.get("db"), role)
    return Endpoint(parts.scheme, parts.hostname, port or 6379, None, username, password, db,
                    tls if parts.scheme == "rediss" else TlsOptions())


_URL_HINT = ("use redis://[user:password@]host:port/db, rediss://... for TLS, or unix:///path/to.sock?db=0; "
             "percent-encode / ? # @ : in a password (e.g. %2F for /)")


def _db(text: str | None, role: str) -> int:
    if text in (None, ""):
        return 0
    try:
        db = int(str(text))
    except ValueError:
        raise ConfigError(f"malformed {role} URL: the database (the path after the port) is not a number",
                          _URL_HINT) from None
    if db < 0:
        raise ConfigError(f"malformed {role} URL: database must be >= 0", _URL_HINT)
    return db


# ---- the options every verb takes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionSettings:
    connect_timeout: float = option(5.0, "Seconds to wait for a connection.", metavar="SECONDS",
                                    parse=positive_seconds)
    socket_timeout: float = option(30.0, "Seconds to wait for a reply.", metavar="SECONDS", parse=positive_seconds)
    retries: int = option(3, "Attempts for transient failures, with backoff, each logged.", metavar="N",
                          parse=integer(1))


@dataclass(frozen=True)
class ServerOptions:
    """The servers as given on the command line (URLs and TLS files); common_config turns them into endpoints."""

    source: str | None = option(None, "Source URL (redis://, rediss://, unix://); a cluster: any node's URL, or "
                                "several comma-separated.", metavar="URL[,URL...]")
    target: str | None = option(None, "Target URL (redis://, rediss://, unix://); a cluster: any node's URL, or "
                                "several comma-separated.", metavar="URL[,URL...]")
    tls_ca_file: str | None = option(None, "CA bundle to verify rediss:// servers.", metavar="FILE")
    tls_cert_file: str | None = option(None, "Client certificate for rediss:// (mutual TLS).", metavar="FILE")
    tls_key_file: str | None = option(None, "Client private key for rediss://.", metavar="FILE")
    tls_insecure: bool = option(False, "Do not verify TLS certificates.")
    connection: ConnectionSettings = group(ConnectionSettings)


@dataclass(frozen=True)
class CommonConfig:
    source: Endpoint | None  # the first URL given
    target: Endpoint | None
    connection: ConnectionSettings = ConnectionSettings()
    # More seed nodes of a cluster, after the first (--source URL1,URL2,...): tried in order to read its topology.
    source_seeds: tuple[Endpoint, ...] = ()
    target_seeds: tuple[Endpoint, ...] = ()

    def seeds(self, role: str) -> list[Endpoint]:
        """Every URL given for one side (`source` or `target`), the first one first."""
        first = self.require_source() if role == "source" else self.require_target()
        return [first, *(self.source_seeds if role == "source" else self.target_seeds)]

    def require_source(self) -> Endpoint:
        if self.source is None:
            raise ConfigError("no source given", "pass --source URL or set MIGRATE_SOURCE")
        return self.source

    def require_target(self) -> Endpoint:
        if self.target is None:
            raise ConfigError("no target given", "pass --target URL or set MIGRATE_TARGET")
        return self.target


def common_config(values: Mapping[str, Any]) -> CommonConfig:
    """Endpoints and connection settings from resolved values (setting name -> value; missing ones: defaults)."""
    given: ServerOptions = build(ServerOptions, values)
    tls = TlsOptions(given.tls_ca_file, given.tls_cert_file, given.tls_key_file, not given.tls_insecure)
    _check_tls_options(given, tls)
    seeds: list[list[Endpoint]] = []
    for role in ("source", "target"):
        url = getattr(given, role)
        endpoints = [parse_endpoint(one, tls, role) for one in split_urls(url)] if url else []
        for endpoint in endpoints:
            if endpoint.uses_tls:
                endpoint.tls.check_files()
        seeds.append(endpoints)
    source, target = (tuple(s) for s in seeds)
    return CommonConfig(source[0] if source else None, target[0] if target else None, given.connection,
                        source[1:], target[1:])


_NEXT_URL: Final = re.compile(r"\s*,\s*(?=(?:rediss?|unix)://)")


def split_urls(text: str) -> list[str]:
    """`URL1,URL2,...`: cut only before a scheme, so a comma inside a password never splits a URL."""
    return [part for part in _NEXT_URL.split(text.strip()) if part]


def _check_tls_options(given: ServerOptions, tls: TlsOptions) -> None:
    """TLS options are for rediss:// URLs: given with none, the user would believe a link is encrypted that is not."""
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigError("--tls-cert-file and --tls-key-file go together (mutual TLS needs both)",
                          "give both files, or neither")
    options_given = tls.ca_file or tls.cert_file or tls.key_file or given.tls_insecure
    urls = [u for u in (given.source, given.target) if u]
    if options_given and urls and not any(u.strip().lower().startswith("rediss://") for u in urls):
        raise ConfigError("TLS options were given but no URL uses TLS: redis:// connects in clear text",
                          "use rediss://host:port for a TLS server, or drop the --tls-* options")
