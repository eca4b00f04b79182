"""State outside the keyspace: function libraries, ACL users and the config parameters a migration depends on.

Function libraries and ACL users are data an application needs: a difference fails verification. Config parameters
are reported as warnings (a different eviction policy is a risk, not lost data). Password hashes never leave here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from migrate.facts.releases import Version
from migrate.identity import ServerIdentity
from migrate.verify.replies import as_bytes, as_map, is_error
from migrate.verify.result import NonKeyDiff
from migrate.wire import Channel

FUNCTIONS_FROM: dict[str, Version] = {"redis": (7, 0), "valkey": (7, 2)}
ACL_FROM: dict[str, Version] = {"redis": (6, 0), "valkey": (7, 2)}
CHANNEL_ACL_FROM: Version = (6, 2)  # before: no channel rules, every channel allowed (same as &*)

# ACL LIST tokens whose presence depends on the server release, not on the user (Redis 8.0 and Valkey 8.x print
# `sanitize-payload` for every user, Valkey 9 and Redis 7 do not).
ACL_VERSION_TOKENS = frozenset({"sanitize-payload"})

# (parameter, why it matters): differences are warnings.
CONFIG_PARAMETERS: tuple[tuple[str, str], ...] = (
    ("maxmemory-policy", "eviction policy: a target that evicts can drop migrated keys"),
    ("notify-keyspace-events", "applications listening to keyspace notifications need the same classes"),
    ("databases", "keys in a database the target does not have cannot be migrated"),
    ("proto-max-bulk-len", "values larger than the target's limit cannot be written"),
    ("timeout", "idle client timeout seen by applications"),
    ("appendonly", "durability of the migrated data"),
)


def diff_nonkey(src: Channel, tgt: Channel, src_id: ServerIdentity, tgt_id: ServerIdentity
                ) -> tuple[list[NonKeyDiff], list[str]]:
    diffs: list[NonKeyDiff] = []
    notes: list[str] = []
    for check in (_functions, _acl_users, _config):
        found, note = check(src, tgt, src_id, tgt_id)
        diffs += found
        notes += note
    return diffs, notes


def _supports(ident: ServerIdentity, table: dict[str, Version]) -> bool:
    first = table.get(ident.product)
    return first is not None and ident.version >= first


Check = Callable[[Channel, Channel, ServerIdentity, ServerIdentity], tuple[list[NonKeyDiff], list[str]]]


def _functions(src: Channel, tgt: Channel, src_id: ServerIdentity, tgt_id: ServerIdentity
               ) -> tuple[list[NonKeyDiff], list[str]]:
    if not _supports(src_id, FUNCTIONS_FROM):
        return [], [f"functions: not compared, the source ({src_id.label}) has no function libraries (7.0+)"]
    src_libs = _libraries(src.command(b"FUNCTION", b"LIST", b"WITHCODE"))
    if src_libs is None:
        return [], ["functions: not compared, FUNCTION LIST was refused on the source"]
    tgt_libs = _libraries(tgt.command(b"FUNCTION", b"LIST", b"WITHCODE")) if _supports(tgt_id, FUNCTIONS_FROM) else {}
    if tgt_libs is None:
        return [], ["functions: not compared, FUNCTION LIST was refused on the target"]
    return _diff_maps("function", src_libs, tgt_libs, "divergence", lambda a, b: "library code differs"), []


def _libraries(reply: Any) -> dict[str, bytes] | None:
    if is_error(reply):
        return None
    libs = (as_map(item) for item in reply or [])
    return {as_bytes(lib[b"library_name"]).decode("utf-8", "replace"): as_bytes(lib.get(b"library_code", b""))
            for lib in libs}


def _acl_users(src: Channel, tgt: Channel, src_id: ServerIdentity, tgt_id: ServerIdentity
               ) -> tuple[list[NonKeyDiff], list[str]]:
    if not (_supports(src_id, ACL_FROM) and _supports(tgt_id, ACL_FROM)):
        return [], ["ACL users: not compared, a server predates ACLs (6.0)"]
    src_users, tgt_users = _users(src.command(b"ACL", b"LIST"), src_id), _users(tgt.command(b"ACL", b"LIST"), tgt_id)
    if src_users is None or tgt_users is None:
        return [], ["ACL users: not compared, ACL LIST was refused (needs the @admin category)"]
    return _diff_maps("acl_user", src_users, tgt_users, "divergence", _rules_detail), []


def _users(reply: Any, ident: ServerIdentity) -> dict[str, frozenset[str]] | None:
    if is_error(reply):
        return None
    users: dict[str, frozenset[str]] = {}
    for line in reply or []:
        tokens = as_bytes(line).decode("utf-8", "replace").split()
        if len(tokens) >= 2 and tokens[0] == "user":
            users[tokens[1]] = normalize_rules(tokens[2:], ident)
    return users


def normalize_rules(tokens: list[str], ident: ServerIdentity) -> frozenset[str]:
    """Rules as a set: ACL LIST prints them in a canonical order per release, so order carries no meaning here."""
    rules = {t for t in tokens if t not in ACL_VERSION_TOKENS}
    if ident.version < CHANNEL_ACL_FROM and not any(t.startswith("&") or t == "resetchannels" for t in rules):
        rules.add("&*")
    return frozenset(rules)


def _rules_detail(src: frozenset[str], tgt: frozenset[str]) -> str:
    def shown(rules: frozenset[str]) -> str:
        visible = sorted(r for r in rules if not r.startswith(("#", ">", "<")))
        hidden = len(rules) - len(visible)
        return " ".join(visible) + (f" (+{hidden} password entries)" if hidden else "")
    return f"rules only in the source: {shown(src - tgt) or '-'}; only in the target: {shown(tgt - src) or '-'}"


def _config(src: Channel, tgt: Channel, src_id: ServerIdentity, tgt_id: ServerIdentity
            ) -> tuple[list[NonKeyDiff], list[str]]:
    diffs: list[NonKeyDiff] = []
    refused: list[str] = []
    replies = [(src.command(b"CONFIG", b"GET", name), tgt.command(b"CONFIG", b"GET", name))
               for name, _ in CONFIG_PARAMETERS]
    for (name, why), (a, b) in zip(CONFIG_PARAMETERS, replies, strict=True):
        if is_error(a) or is_error(b):
            refused.append(name)
            continue
        src_value, tgt_value = as_map(a).get(name.encode()), as_map(b).get(name.encode())
        if src_value is None or tgt_value is None or _text(src_value) == _text(tgt_value):
            continue
        diffs.append(NonKeyDiff("config", name, "differs",
                                f"source {_text(src_value)!r}, target {_text(tgt_value)!r}: {why}", "warning"))
    notes = [f"config: not compared (CONFIG GET refused): {', '.join(refused)}"] if refused else []
    return diffs, notes


def _text(value: Any) -> str:
    return as_bytes(value).decode("utf-8", "replace")


def _diff_maps(kind: str, src: dict[str, Any], tgt: dict[str, Any], severity: str,
               describe: Callable[[Any, Any], str]) -> list[NonKeyDiff]:
    diffs = [NonKeyDiff(kind, name, "missing_on_target", "present in the source only", severity)
             for name in sorted(src.keys() - tgt.keys())]
    diffs += [NonKeyDiff(kind, name, "extra_on_target", "present in the target only", severity)
              for name in sorted(tgt.keys() - src.keys())]
    diffs += [NonKeyDiff(kind, name, "differs", describe(src[name], tgt[name]), severity)
              for name in sorted(src.keys() & tgt.keys()) if src[name] != tgt[name]]
    return diffs
