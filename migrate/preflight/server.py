"""Facts about one server: identity, persistence, memory, modules, usage, ACLs, functions and command set.

Every read goes through a Prober, so a least-privileged user gets a profile with gaps instead of an error.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

import redis
from redis import exceptions as rex

from migrate.facts.commands import STANDARD_COMMANDS
from migrate.facts.releases import parse_version, rdb_version_written
from migrate.identity import ServerIdentity, identify
from migrate.preflight.probe import Prober, refusal
from migrate.preflight.profile import AclUser, KeyspaceDb, Memory, Module, Persistence, ServerProfile

PERSISTENCE_CONFIG = ("save", "appendonly", "appendfsync", "aof-use-rdb-preamble", "appenddirname")
OTHER_CONFIG = ("maxmemory", "maxmemory-policy", "notify-keyspace-events", "proto-max-bulk-len")


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def as_map(reply: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 flat [k1, v1, k2, v2...] list, with text keys."""
    if isinstance(reply, dict):
        return {text(k): v for k, v in reply.items()}
    if isinstance(reply, list | tuple):
        return {text(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}
    return {}


def gather_server(client: redis.Redis, role: str, endpoint: str) -> ServerProfile:
    """Everything preflight reads from one live server (commandstats first: our own probes must not count)."""
    p = Prober(client, role)
    commandstats = read_commandstats(p)
    identity = read_identity(p)
    config = read_config(p, PERSISTENCE_CONFIG + OTHER_CONFIG)
    version = identity.version
    return ServerProfile(
        role=role, endpoint=endpoint, identity=identity,
        keyspace=read_keyspace(p, identity),
        persistence=read_persistence(p, config),
        memory=read_memory(p, config),
        modules=read_modules(p),
        commandstats=commandstats,
        acl_users=read_acl_users(p),
        acl_categories=read_acl_categories(p),
        functions=read_functions(p) if version >= (7, 0) else (),
        notify_keyspace_events=config.get("notify-keyspace-events"),
        proto_max_bulk_len=_int(config.get("proto-max-bulk-len")),
        command_count=_int(p.command("COMMAND COUNT", "COMMAND", "COUNT")),
        missing_standard=unknown_commands(p, STANDARD_COMMANDS, "COMMAND INFO (standard commands)"),
        gaps=tuple(p.gaps),
    )


def read_commandstats(p: Prober) -> dict[str, int] | None:
    stats = p.ask("INFO commandstats", lambda: p.client.info("commandstats"))
    if stats is None:
        return None
    return {name.removeprefix("cmdstat_").lower(): int(v.get("calls", 0))  # module commands keep their case
            for name, v in stats.items() if isinstance(v, dict)}


def read_identity(p: Prober) -> ServerIdentity:
    """INFO-based identity; HELLO (allowed to every user) when INFO is denied."""
    try:
        return identify(p.client)
    except rex.ResponseError as exc:
        p.note("INFO server", refusal(exc))
    hello = as_map(p.client.execute_command("HELLO"))  # type: ignore[no-untyped-call]
    product = "valkey" if text(hello.get("server", "")).lower() == "valkey" else "redis"
    version_text = text(hello.get("version", "0"))
    version = parse_version(version_text)
    databases = p.ask("CONFIG GET databases", lambda: p.client.config_get("databases"))
    return ServerIdentity(product, version, version_text, rdb_version_written(product, version),
                          text(hello.get("mode", "standalone")), _role(text(hello.get("role", "master"))),
                          _int((databases or {}).get("databases")))


def _role(role: str) -> str:
    return "slave" if role in ("replica", "slave") else "master"


def read_config(p: Prober, names: tuple[str, ...]) -> dict[str, str]:
    """CONFIG GET each name; a refusal is one gap for all of them, not one per name."""
    out: dict[str, str] = {}
    for name in names:
        reply = p.ask("CONFIG GET", partial(p.client.config_get, name))
        if reply is None:
            break  # denied: one gap (recorded by ask) stands for every name
        if name in reply:
            out[name] = text(reply[name])
    return out


def read_keyspace(p: Prober, identity: ServerIdentity) -> dict[int, KeyspaceDb]:
    info = p.ask("INFO keyspace", lambda: p.client.info("keyspace"))
    if info is not None:
        return {int(str(k)[2:]): KeyspaceDb(int(v.get("keys", 0)), int(v.get("expires", 0)),
                                             _int(v.get("subexpiry")))
                for k, v in info.items() if str(k).startswith("db") and isinstance(v, dict)}
    return _keyspace_by_dbsize(p, identity.databases or 16)


def _keyspace_by_dbsize(p: Prober, databases: int) -> dict[int, KeyspaceDb]:
    """Without INFO: SELECT + DBSIZE per database (both allowed to most users), on a connection then dropped."""
    out: dict[int, KeyspaceDb] = {}
    conn = p.client.connection_pool.get_connection()
    try:
        for db in range(databases):
            try:
                conn.send_command("SELECT", db)  # type: ignore[no-untyped-call]
                conn.read_response()
                conn.send_command("DBSIZE")  # type: ignore[no-untyped-call]
                size = int(conn.read_response())
            except rex.ResponseError as exc:  # index out of range, or SELECT / DBSIZE denied
                if db == 0:
                    p.note("DBSIZE", refusal(exc))
                break
            if size:
                out[db] = KeyspaceDb(size)
    finally:
        conn.disconnect()  # type: ignore[no-untyped-call]  # another db is selected: never hand it back so
        p.client.connection_pool.release(conn)
    return out


def read_persistence(p: Prober, config: dict[str, str]) -> Persistence:
    info = p.ask("INFO persistence", lambda: p.client.info("persistence")) or {}
    return Persistence(
        save=config.get("save"),
        appendonly=_yes(config.get("appendonly")),
        appendfsync=config.get("appendfsync"),
        aof_use_rdb_preamble=_yes(config.get("aof-use-rdb-preamble")),
        appenddirname=config.get("appenddirname"),
        last_bgsave_status=_str(info.get("rdb_last_bgsave_status")),
        last_save_time=_int(info.get("rdb_last_save_time")),
        changes_since_last_save=_int(info.get("rdb_changes_since_last_save")),
        aof_last_write_status=_str(info.get("aof_last_write_status")) if info.get("aof_enabled") else None,
    )


def read_memory(p: Prober, config: dict[str, str]) -> Memory:
    info = p.ask("INFO memory", lambda: p.client.info("memory")) or {}
    return Memory(_int(info.get("used_memory")), _int(info.get("used_memory_dataset")),
                  _int(config.get("maxmemory")), config.get("maxmemory-policy"))


def read_modules(p: Prober) -> tuple[Module, ...] | None:
    reply = p.command("MODULE LIST", "MODULE", "LIST")
    if reply is None:
        return None
    out = []
    for entry in reply:
        fields = as_map(entry)
        out.append(Module(text(fields.get("name", "")), _int(fields.get("ver")) or 0, text(fields.get("path", ""))))
    return tuple(out)


def read_acl_users(p: Prober) -> tuple[AclUser, ...] | None:
    reply = p.command("ACL LIST", "ACL", "LIST")
    return None if reply is None else tuple(parse_acl_rule(text(line)) for line in reply)


def parse_acl_rule(line: str) -> AclUser:
    """'user NAME on #hash ~* +@all -@json +get' -> the categories and commands it names."""
    parts = line.split()
    name = parts[1] if len(parts) > 1 else ""
    categories = tuple(dict.fromkeys(t[2:].lower() for t in parts[2:] if t[:2] in ("+@", "-@")))
    commands = tuple(dict.fromkeys(t[1:].lower() for t in parts[2:]
                                   if t[:1] in ("+", "-") and not t.startswith(("+@", "-@"))))
    return AclUser(name, _redact_passwords(parts), categories, commands)


def _redact_passwords(parts: list[str]) -> str:
    """ACL LIST shows hashes (#...), never clear text; a '>' clear password would be hidden all the same."""
    return " ".join("#…" if t.startswith("#") else ">***" if t.startswith(">") else t for t in parts)


def read_acl_categories(p: Prober) -> tuple[str, ...] | None:
    reply = p.command("ACL CAT", "ACL", "CAT")
    return None if reply is None else tuple(sorted(text(c).lower() for c in reply))


def read_functions(p: Prober) -> tuple[str, ...] | None:
    reply = p.command("FUNCTION LIST", "FUNCTION", "LIST")
    if reply is None:
        return None
    return tuple(text(as_map(lib).get("library_name", "")) for lib in reply)


def unknown_commands(p: Prober, names: tuple[str, ...] | list[str], what: str) -> tuple[str, ...] | None:
    """The names COMMAND INFO does not know on this server (None: COMMAND INFO refused)."""
    known = command_support(p, names, what)
    return None if known is None else tuple(n for n, ok in known.items() if not ok)


def command_support(p: Prober, names: tuple[str, ...] | list[str], what: str) -> dict[str, bool] | None:
    names = list(dict.fromkeys(n.lower() for n in names))
    if not names:
        return {}
    reply = p.command(what, "COMMAND", "INFO", *names)
    if reply is None:
        return None
    if isinstance(reply, dict):  # some client versions turn the reply into a map of known commands
        known = {text(k).lower() for k in reply}
        return {n: n in known for n in names}
    return {n: entry is not None for n, entry in zip(names, reply, strict=False)}


def _int(value: Any) -> int | None:
    with contextlib.suppress(TypeError, ValueError):
        return int(text(value)) if value is not None else None
    return None


def _str(value: Any) -> str | None:
    return None if value is None else text(value)


def _yes(value: str | None) -> bool | None:
    return None if value is None else value.strip().lower() == "yes"

