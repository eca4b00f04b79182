"""Which way to migrate: native replication, live replay with per-key conversion, or flush-and-reload.

Native replication (the target runs REPLICAOF against the source) is the fastest (measured 1.48 s for 1M keys here,
compatibility.md) but only when the target loads the source's RDB stream as it is: every key kind classified "as-is".
Live replay (`migrate run`: SCAN + DUMP, restamped or rewritten per key, RESTORE) works whenever a live source is
there. Flush-and-reload (empty the target, load a converted snapshot) is what is left with only an RDB file or an AOF.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.facts.commands import STRATEGY_COMMANDS
from migrate.facts.notifications import notifications_missing
from migrate.facts.releases import accepts_rdb_version
from migrate.identity import ServerIdentity
from migrate.preflight.profile import Census, Profile, ServerProfile

TITLES = {
    "replication": "native replication (REPLICAOF)",
    "replay": "live replay with per-key conversion (migrate run)",
    "reload": "flush-and-reload from an RDB snapshot or an AOF",
    "sync": "online sync until a cutover (migrate run --strategy sync)",
}


@dataclass(frozen=True)
class Option:
    name: str  # replication | replay | reload | sync
    possible: bool
    why_not: tuple[str, ...] = ()
    mode: str = ""  # sync: how it would follow the source (replication stream, or the keyspace-notification fallback)


@dataclass(frozen=True)
class Strategy:
    name: str  # the recommended option, or "none" when no option is possible
    title: str
    reason: str
    options: tuple[Option, ...]
    keys: int  # keys to move (from INFO keyspace / the RDB file)
    bytes: int | None  # estimated data volume: MEMORY USAGE summed (scaled from the sample) or the file size
    used_memory: int | None  # the source's used_memory, for comparison
    conversions: dict[str, int]  # action -> keys (estimated)


def recommend(profile: Profile) -> Strategy:
    options = (replication_option(profile), replay_option(profile), reload_option(profile), sync_option(profile))
    chosen = next((o for o in options[:3] if o.possible), None)  # sync is listed, chosen by the operator
    census = profile.key_census
    conversions = _conversions(census)
    return Strategy(
        name=chosen.name if chosen else "none",
        title=TITLES[chosen.name] if chosen else "no strategy is possible yet",
        reason=_reason(chosen, options, conversions),
        options=options,
        keys=_keys(profile),
        bytes=_volume(profile),
        used_memory=profile.source.memory.used_memory if profile.source and profile.source.memory else None,
        conversions=conversions,
    )


def replication_option(profile: Profile) -> Option:
    why: list[str] = []
    source, target = profile.source_identity, profile.target_identity
    if profile.source is None or not profile.source.live:
        why.append("no live source to replicate from")
    if source is None or target is None:
        why.append("the target is unknown" if target is None else "the source is unknown")
    elif source.rdb_version is None or not accepts_rdb_version(target.product, target.version, source.rdb_version,
                                                                target.relaxed):
        why.append(f"{target.label} (rdb-version-check {target.rdb_version_check or 'n/a'}) does not load "
                   f"RDB {source.rdb_version} written by {source.label}")
    census = profile.key_census
    if census is not None:
        not_as_is = {a: n for a, n in _conversions(census).items() if a != "as-is" and n}
        if not_as_is and not why:
            why.append("some keys cannot be loaded as they are: "
                       + ", ".join(f"{n} {a}" for a, n in sorted(not_as_is.items())))
    why += _missing_commands(profile, "replication")
    why += _missing_rights(profile, "replicaof")
    why += _mode_and_databases(profile, "replication")
    return Option("replication", not why, tuple(why))


def replay_option(profile: Profile) -> Option:
    why: list[str] = []
    if profile.source is None or not profile.source.live:
        why.append("no live source (only files)")
    why += _target_missing(profile)
    why += _missing_commands(profile, "replay")
    why += _missing_rights(profile, "replay")
    why += _mode_and_databases(profile)
    return Option("replay", not why, tuple(why))


def reload_option(profile: Profile) -> Option:
    why: list[str] = []
    files = profile.rdb_file is not None or profile.aof is not None
    if not files and (profile.source is None or not profile.source.live):
        why.append("no RDB file, no AOF and no live source to take a snapshot from")
    if profile.rdb_file is not None and profile.rdb_file.error:
        why.append(f"the RDB file is unreadable: {profile.rdb_file.error}")
    if profile.aof is not None and profile.aof.error:
        why.append(f"the AOF is unusable: {profile.aof.error}")
    why += _target_missing(profile)
    # With a file the snapshot is not taken from the source: its SYNC does not matter.
    why += _missing_commands(profile, "reload", ("target",) if files else ("source", "target"))
    why += _missing_rights(profile, "reload", ("target",) if files else ("source", "target"))
    return Option("reload", not why, tuple(why))


def sync_option(profile: Profile) -> Option:
    """Whether `run --strategy sync` can follow the source, and how: its replication stream, or (PSYNC renamed or
    not granted) live replay plus keyspace notifications, which needs notify-keyspace-events on."""
    why: list[str] = []
    if profile.source is None or not profile.source.live:
        why.append("no live source to follow")
    why += _target_missing(profile)
    why += _mode_and_databases(profile)
    why += [w for w in _missing_rights(profile, "sync", ("target",))]
    refused = _missing_commands(profile, "sync", ("source",)) + _missing_rights(profile, "sync", ("source",))
    if not refused:
        return Option("sync", not why, tuple(why), "replication stream (PSYNC)")
    flags = profile.source.notify_keyspace_events if profile.source is not None else None
    missing = notifications_missing(flags)
    mode = "keyspace-notification fallback (" + "; ".join(refused) + ")"
    if missing is not None:
        why.append(f"{'; '.join(refused)}, and {missing} (CONFIG SET notify-keyspace-events KEA on the source)")
    return Option("sync", not why, tuple(why), mode)


def _target_missing(profile: Profile) -> list[str]:
    """An assumed target (--target-version) is enough to plan; an unreachable or absent one is not."""
    if profile.target is None or profile.target.identity is None:
        return ["no target given"]
    return [f"the target is unreachable ({profile.target.unreachable})"] if profile.target.unreachable else []


def _missing_commands(profile: Profile, way: str, roles: tuple[str, ...] = ("source", "target")) -> list[str]:
    why = []
    for role, needed in STRATEGY_COMMANDS[way].items():
        if role not in roles:
            continue
        server: ServerProfile | None = getattr(profile, role)
        missing = set(server.missing_standard or ()) if server is not None else set()
        lacking = [c for c in needed if c in missing]
        # replication needs PSYNC or SYNC, not both
        if lacking and (way != "replication" or role != "source" or len(lacking) == len(needed)):
            why.append(f"the {role} has renamed or disabled {', '.join(c.upper() for c in lacking)}")
    return why


def _missing_rights(profile: Profile, strategy: str, roles: tuple[str, ...] = ("source", "target")) -> list[str]:
    return [f"the {gap.role} user lacks " + ", ".join(c.upper().replace("|", " ") for c in (*gap.denied, *gap.unknown))
            for gap in profile.rights
            if gap.strategy == strategy and gap.role in roles and (gap.denied or gap.unknown)]


def _mode_and_databases(profile: Profile, strategy: str = "replay") -> list[str]:
    why = []
    source, target = profile.source_identity, profile.target_identity
    for ident, role in ((source, "source"), (target, "target")):
        if ident is not None and ident.mode == "cluster" and strategy == "replication":
            why.append(f"the {role} is a cluster (a cluster node only replicates within its own cluster)")
    for side in (profile.source_cluster, profile.target_cluster):
        if side is not None and side.problems:
            why.append(f"the {side.role} cluster is not fit to migrate ({'; '.join(side.problems)})")
    if target is not None and target.role == "slave" and profile.target is not None and profile.target.live:
        why.append("the target is a read-only replica")
    return why


def _conversions(census: Census | None) -> dict[str, int]:
    if census is None:
        return {}
    out: dict[str, int] = {}
    for per_action in census.conversion.by_type.values():
        for action, keys in per_action.items():
            out[action] = out.get(action, 0) + keys
    return out


def _keys(profile: Profile) -> int:
    if profile.source is not None and profile.source.live:
        return profile.source.total_keys
    census = profile.key_census
    return census.total if census else 0


def _volume(profile: Profile) -> int | None:
    if profile.census is not None and profile.census.examined:
        return profile.census.memory_estimate
    if profile.rdb_file is not None:
        return profile.rdb_file.size
    if profile.aof is not None and profile.aof.files:
        return sum(f.size or 0 for f in profile.aof.files)
    return None


def _reason(chosen: Option | None, options: tuple[Option, ...], conversions: dict[str, int]) -> str:
    if chosen is None:
        return "; ".join(f"{TITLES[o.name]}: {o.why_not[0]}" for o in options if o.why_not)
    if chosen.name == "replication":
        return "the target loads the source's RDB stream as it is: fastest, and it keeps every key and TTL"
    skipped = "; ".join(f"not {o.name}: {o.why_not[0]}" for o in options[: options.index(chosen)] if o.why_not)
    if chosen.name == "replay":
        moved = ", ".join(f"{n} {a}" for a, n in sorted(conversions.items()) if n) or "no keys classified"
        return f"{skipped}; keys are converted one by one ({moved})".lstrip("; ")
    return f"{skipped}; load a converted snapshot into the emptied target".lstrip("; ")


def target_label(identity: ServerIdentity | None) -> str:
    return identity.describe() if identity else "unknown"
