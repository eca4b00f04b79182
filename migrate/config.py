"""Configuration: flags > MIGRATE_* environment variables > migrate.toml, merged once into frozen dataclasses.

Passwords live only in `Endpoint.password`, which is excluded from repr; every printed or logged form of an endpoint
is the redacted URL.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from migrate.errors import ConfigError

DEFAULT_CONFIG_FILE = "migrate.toml"
ENV_PREFIX = "MIGRATE_"
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
    """Parse redis://, rediss:// or unix:// URLs; errors name the role, never the password."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"malformed {role} URL: {exc}", _URL_HINT) from None
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


_URL_HINT = "use redis://[user:password@]host:port/db, rediss://... for TLS, or unix:///path/to.sock?db=0"


def _db(text: str | None, role: str) -> int:
    if text in (None, ""):
        return 0
    try:
        db = int(str(text))
    except ValueError:
        raise ConfigError(f"malformed {role} URL: database must be a number, got {text!r}", _URL_HINT) from None
    if db < 0:
        raise ConfigError(f"malformed {role} URL: database must be >= 0", _URL_HINT)
    return db


# ---- layered settings -------------------------------------------------------------------------------------------

Converter = Callable[[Any], Any]


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def to_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return tuple(p.strip() for p in str(value).split(",") if p.strip())


@dataclass(frozen=True)
class Setting:
    name: str
    convert: Converter = str
    default: Any = None


def load_file(path: str | None) -> dict[str, Any]:
    """Read migrate.toml (explicit path must exist; the default one is optional)."""
    candidate = Path(path) if path else Path(DEFAULT_CONFIG_FILE)
    if not candidate.exists():
        if path:
            raise ConfigError(f"config file not found: {path}", "give an existing --config file")
        return {}
    try:
        return tomllib.loads(candidate.read_text())
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigError(f"cannot read config file {candidate}: {exc}", "fix the TOML syntax") from None


def resolve(
    settings: tuple[Setting, ...],
    flags: Mapping[str, Any],
    verb: str | None = None,
    env: Mapping[str, str] | None = None,
    file_values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge one value per setting: flag, else MIGRATE_<NAME>, else [verb] or top level of the file, else default."""
    env = os.environ if env is None else env
    file_values = file_values or {}
    section = file_values.get(verb, {}) if verb else {}
    merged: dict[str, Any] = {}
    for s in settings:
        raw, origin = _pick(s.name, flags, env, section, file_values)
        try:
            merged[s.name] = s.default if raw is None else s.convert(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid value for {s.name} (from {origin}): {exc}") from None
    return merged


def _pick(name: str, flags: Mapping[str, Any], env: Mapping[str, str], section: Mapping[str, Any],
          top: Mapping[str, Any]) -> tuple[Any, str]:
    if flags.get(name) not in (None, ()):
        return flags[name], "--" + name.replace("_", "-")
    env_name = ENV_PREFIX + name.upper()
    if env.get(env_name) not in (None, ""):
        return env[env_name], env_name
    if name in section:
        return section[name], "config file"
    if name in top:
        return top[name], "config file"
    return None, "default"


COMMON_SETTINGS = (
    Setting("source"),
    Setting("target"),
    Setting("tls_ca_file"),
    Setting("tls_cert_file"),
    Setting("tls_key_file"),
    Setting("tls_insecure", to_bool, False),
    Setting("connect_timeout", float, 5.0),
    Setting("socket_timeout", float, 30.0),
    Setting("retries", int, 3),
)


@dataclass(frozen=True)
class ConnectionSettings:
    connect_timeout: float = 5.0
    socket_timeout: float = 30.0
    retries: int = 3  # attempts for transient failures, bounded


@dataclass(frozen=True)
class CommonConfig:
    source: Endpoint | None
    target: Endpoint | None
    connection: ConnectionSettings = ConnectionSettings()

    def require_source(self) -> Endpoint:
        if self.source is None:
            raise ConfigError("no source given", "pass --source URL or set MIGRATE_SOURCE")
        return self.source

    def require_target(self) -> Endpoint:
        if self.target is None:
            raise ConfigError("no target given", "pass --target URL or set MIGRATE_TARGET")
        return self.target


def common_config(values: Mapping[str, Any]) -> CommonConfig:
    tls = TlsOptions(values.get("tls_ca_file"), values.get("tls_cert_file"), values.get("tls_key_file"),
                     not values.get("tls_insecure", False))
    endpoints = []
    for role in ("source", "target"):
        url = values.get(role)
        endpoint = parse_endpoint(url, tls, role) if url else None
        if endpoint and endpoint.uses_tls:
            endpoint.tls.check_files()
        endpoints.append(endpoint)
    conn = ConnectionSettings(values.get("connect_timeout", 5.0), values.get("socket_timeout", 30.0),
                              max(1, values.get("retries", 3)))
    return CommonConfig(endpoints[0], endpoints[1], conn)
