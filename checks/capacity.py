"""Will the data fit and land: target emptiness, memory, bulk length, databases, persistence, roles and modes."""

from __future__ import annotations

from collections.abc import Iterator

from migrate.preflight.findings import Finding, blocker, info, warning
from migrate.preflight.profile import Profile, ServerProfile
from migrate.preflight.registry import check

HEADROOM = 1.2  # a target with less than 20% over the source's data has no room for replay overhead or growth


def _live_target(profile: Profile) -> ServerProfile | None:
    target = profile.target
    return target if target is not None and target.live else None


@check("TARGET_NOT_EMPTY")
def target_empty(profile: Profile) -> Iterator[Finding]:
    target = _live_target(profile)
    if target is None or not target.total_keys:
        return
    per_db = {db: k.keys for db, k in sorted(target.keyspace.items()) if k.keys}
    yield warning("TARGET_NOT_EMPTY",
                  f"the target already holds {target.total_keys} keys "
                  f"({', '.join(f'db{db}: {n}' for db, n in per_db.items())}): replication would erase them, "
                  "replay would refuse or overwrite same-named keys",
                  "empty it (`migrate run --flush-target --yes`) or decide to keep them (`--replace`)",
                  keys_by_db=per_db)


@check("TARGET_MAXMEMORY_LOW", "TARGET_MAXMEMORY_TIGHT", "EVICTION_POLICY_DIFFERS")
def target_memory(profile: Profile) -> Iterator[Finding]:
    target, source = _live_target(profile), profile.source
    if target is None or target.memory is None or source is None or source.memory is None:
        return
    needed = source.memory.used_memory_dataset or source.memory.used_memory
    limit = target.memory.maxmemory
    evidence = {"target_maxmemory": limit, "source_used_memory": source.memory.used_memory,
                "source_used_memory_dataset": source.memory.used_memory_dataset,
                "target_policy": target.memory.maxmemory_policy}
    if limit and needed and limit < needed:
        yield blocker("TARGET_MAXMEMORY_LOW",
                      f"target maxmemory {_mb(limit)} is below the source's data ({_mb(needed)}): the migration "
                      + ("would evict keys" if _evicts(target) else "would fail with OOM"),
                      f"raise the target's maxmemory above {_mb(int(needed * HEADROOM))}", **evidence)
    elif limit and needed and limit < needed * HEADROOM:
        yield warning("TARGET_MAXMEMORY_TIGHT",
                      f"target maxmemory {_mb(limit)} leaves less than 20% over the source's data ({_mb(needed)})",
                      f"raise the target's maxmemory to at least {_mb(int(needed * HEADROOM))}", **evidence)
    policies = (source.memory.maxmemory_policy, target.memory.maxmemory_policy)
    if None not in policies and policies[0] != policies[1]:
        yield warning("EVICTION_POLICY_DIFFERS", f"maxmemory-policy differs: source {policies[0]}, target "
                      f"{policies[1]}", f"CONFIG SET maxmemory-policy {policies[0]} on the target", **evidence)


def _evicts(target: ServerProfile) -> bool:
    policy = target.memory.maxmemory_policy if target.memory else None
    return policy is not None and policy != "noeviction"


def _mb(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


@check("PROTO_MAX_BULK_LEN")
def bulk_length(profile: Profile) -> Iterator[Finding]:
    target, census = _live_target(profile), profile.key_census
    if target is None or not target.proto_max_bulk_len or census is None or not census.biggest:
        return
    limit = target.proto_max_bulk_len
    too_big = [k for k in census.biggest if (k.payload or k.memory) > limit]
    if too_big:
        yield blocker("PROTO_MAX_BULK_LEN",
                      f"{len(too_big)} keys are larger than the target's proto-max-bulk-len ({_mb(limit)}), e.g. "
                      f"{too_big[0].key} ({_mb(too_big[0].payload or too_big[0].memory)}): RESTORE of their payload "
                      "would be refused", f"CONFIG SET proto-max-bulk-len on the target above "
                      f"{_mb(max(k.payload or k.memory for k in too_big))}",
                      limit=limit, keys={k.key: k.payload or k.memory for k in too_big})


@check("DATABASES_TOO_FEW", "DATABASES_DIFFER")
def databases(profile: Profile) -> Iterator[Finding]:
    target = profile.target_identity
    used = _used_dbs(profile)
    if target is None or target.databases is None or not used:
        return
    beyond = sorted(db for db in used if db >= target.databases)
    source_conf = profile.source_identity.databases if profile.source_identity else None
    evidence = {"source_databases": source_conf, "target_databases": target.databases, "used": sorted(used)}
    if beyond:
        yield blocker("DATABASES_TOO_FEW",
                      f"the source uses databases {', '.join(map(str, beyond))} but the target has only "
                      f"{target.databases} (0-{target.databases - 1})",
                      f"start the target with `databases {max(used) + 1}` or more, or map them with --db-map",
                      **evidence)
    elif source_conf is not None and source_conf != target.databases:
        yield info("DATABASES_DIFFER", f"databases configured: source {source_conf}, target {target.databases}; "
                   f"the used ones ({', '.join(map(str, sorted(used)))}) fit", "", **evidence)


def _used_dbs(profile: Profile) -> set[int]:
    if profile.source is not None and profile.source.keyspace:
        return {db for db, k in profile.source.keyspace.items() if k.keys}
    census = profile.key_census
    return {db for db, c in census.dbs.items() if c.total} if census else set()


@check("TARGET_NO_PERSISTENCE", "SOURCE_LAST_SAVE_FAILED", "SOURCE_AOF_WRITE_FAILED")
def persistence(profile: Profile) -> Iterator[Finding]:
    target, source = _live_target(profile), profile.source
    if target is not None and target.persistence is not None:
        p = target.persistence
        if p.save == "" and p.appendonly is False:
            yield warning("TARGET_NO_PERSISTENCE", "the target has neither RDB snapshots (save \"\") nor AOF: "
                          "migrated data is lost when it restarts", "configure `save` or `appendonly yes` on the "
                          "target before the cutover", save=p.save, appendonly=p.appendonly)
    if source is not None and source.persistence is not None:
        p = source.persistence
        if p.last_bgsave_status not in (None, "ok"):
            yield warning("SOURCE_LAST_SAVE_FAILED", f"the source's last background save failed "
                          f"({p.last_bgsave_status}): its RDB file on disk is stale",
                          "fix the source's disk or permissions before relying on a snapshot",
                          last_save_time=p.last_save_time, changes_since_last_save=p.changes_since_last_save)
        if p.aof_last_write_status not in (None, "ok"):
            yield warning("SOURCE_AOF_WRITE_FAILED", f"the source's last AOF write failed ({p.aof_last_write_status})",
                          "fix the source's disk before the cutover")


@check("TARGET_IS_REPLICA")
def roles(profile: Profile) -> Iterator[Finding]:
    target = _live_target(profile)
    if target is not None and target.identity is not None and target.identity.role == "slave" and \
            profile.target_cluster is None:  # a cluster is written through its primaries, whatever the seed
        yield blocker("TARGET_IS_REPLICA", "the target is a read-only replica of another server",
                      "point --target at a primary, or run REPLICAOF NO ONE on it")


@check("PERSISTENCE_SETTINGS")
def persistence_settings(profile: Profile) -> Iterator[Finding]:
    source, target = profile.source, _live_target(profile)
    if source is None or source.persistence is None:
        return
    p = source.persistence
    evidence = {"source": _persistence_line(source), "target": _persistence_line(target) if target else None}
    yield info("PERSISTENCE_SETTINGS", f"source persistence: {evidence['source']}"
               + (f"; target: {evidence['target']}" if target else ""), "", save=p.save, appendonly=p.appendonly,
               **evidence)


def _persistence_line(server: ServerProfile | None) -> str:
    if server is None or server.persistence is None:
        return "unknown"
    p = server.persistence
    save = "off" if p.save == "" else (p.save or "?")
    aof = ("on" if p.appendonly else "off") if p.appendonly is not None else "?"
    extra = f", fsync {p.appendfsync}, rdb preamble {p.aof_use_rdb_preamble}" if p.appendonly else ""
    return f"save {save}, AOF {aof}{extra}, last bgsave {p.last_bgsave_status or '?'}"
