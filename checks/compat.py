"""Data compatibility: RDB versions, how payloads convert, hash field TTLs, module keys, streams, functions, files."""

from __future__ import annotations

from collections.abc import Iterator

from migrate.facts.modules import MODULES, ModuleFact, module_for_command, module_for_name, module_for_type
from migrate.facts.releases import VALKEY_FOREIGN_RANGE, VALKEY_RELAXED_FROM, accepts_rdb_version
from migrate.facts.types import CORE_TYPES
from migrate.preflight.findings import Finding, blocker, info, warning
from migrate.preflight.profile import AofFacts, Census, EmptyKeys, Profile
from migrate.preflight.registry import check


@check("RDB_VERSION_REFUSED", "RELAXED_MODE_AVAILABLE", "RELAXED_MODE_ON")
def rdb_version(profile: Profile) -> Iterator[Finding]:
    source, target = profile.source_identity, profile.target_identity
    if source is None or target is None or source.rdb_version is None:
        return
    evidence = {"source": source.label, "source_rdb_version": source.rdb_version, "target": target.label,
                "target_rdb_version": target.rdb_version, "rdb_version_check": target.rdb_version_check}
    foreign = target.product == "valkey" and source.rdb_version in VALKEY_FOREIGN_RANGE
    if not accepts_rdb_version(target.product, target.version, source.rdb_version, target.relaxed):
        yield info("RDB_VERSION_REFUSED",
                   f"{target.label} does not load RDB {source.rdb_version} (written by {source.label}): native "
                   "replication is not possible, payloads are converted per key",
                   "use live replay (`migrate run`), which restamps or rewrites each payload", **evidence)
        if foreign and target.version >= VALKEY_RELAXED_FROM:
            yield info("RELAXED_MODE_AVAILABLE",
                       f"{target.label} runs with rdb-version-check={target.rdb_version_check}; relaxed mode loads "
                       f"RDB {source.rdb_version} payloads of types 0-21 as they are",
                       "optionally `CONFIG SET rdb-version-check relaxed` on the target before the migration",
                       **evidence)
    elif foreign and target.relaxed:
        yield info("RELAXED_MODE_ON",
                   f"{target.label} is in relaxed mode: it loads RDB {source.rdb_version} payloads of types 0-21 "
                   "as they are (hashes with field TTLs are still rewritten)", "", **evidence)


@check("RESTAMP_NEEDED", "REWRITE_NEEDED", "UNSUPPORTED_PAYLOADS", "UNCLASSIFIED_KEYS")
def payload_conversion(profile: Profile) -> Iterator[Finding]:
    census = profile.key_census
    if census is None or profile.target_identity is None:
        return
    conv, label = census.conversion, profile.target_identity.label
    per_type = {a: {t: n[a] for t, n in sorted(conv.by_type.items()) if n.get(a)} for a in
                ("restamp", "rewrite", "unsupported", "unclassified")}
    common = {"sampled": not census.complete, "payloads_classified": conv.dumped}
    if per_type["restamp"]:
        yield info("RESTAMP_NEEDED",
                   f"{sum(per_type['restamp'].values())} keys need their DUMP payload restamped for {label} "
                   f"({_per_type(per_type['restamp'])})",
                   "nothing to do: `migrate run` restamps them (same bytes, the target's RDB version)",
                   keys_by_type=per_type["restamp"], examples=conv.examples.get("restamp", ()), **common)
    if per_type["rewrite"]:
        yield info("REWRITE_NEEDED",
                   f"{sum(per_type['rewrite'].values())} keys must be rewritten with commands for {label} "
                   f"({_per_type(per_type['rewrite'])})",
                   "nothing to do: `migrate run` rebuilds them with plain commands (slower than RESTORE)",
                   keys_by_type=per_type["rewrite"], examples=conv.examples.get("rewrite", ()),
                   reasons=conv.reasons.get("rewrite", ()), **common)
    core_unsupported = {t: n for t, n in per_type["unsupported"].items() if t in CORE_TYPES}
    if core_unsupported:
        yield blocker("UNSUPPORTED_PAYLOADS",
                      f"{sum(core_unsupported.values())} keys cannot be moved to {label} "
                      f"({_per_type(core_unsupported)})",
                      "leave them out (--exclude) or convert them by hand before the migration",
                      keys_by_type=core_unsupported, reasons=conv.reasons.get("unsupported", ()), **common)
    if per_type["unclassified"]:
        yield warning("UNCLASSIFIED_KEYS",
                      f"{sum(per_type['unclassified'].values())} keys were not classified (no payload DUMPed: "
                      "larger than --dump-limit, or DUMP refused)",
                      "grant DUMP to the preflight user or raise --dump-limit",
                      keys_by_type=per_type["unclassified"], examples=conv.examples.get("unclassified", ()))




def _per_type(counts: dict[str, int]) -> str:
    return ", ".join(f"{t}: {n}" for t, n in sorted(counts.items()))


@check("HFE_UNSUPPORTED", "HFE_REWRITTEN")
def hash_field_ttls(profile: Profile) -> Iterator[Finding]:
    source, target = profile.source, profile.target_identity
    census = profile.key_census
    subexpiry = sum(db.subexpiry or 0 for db in source.keyspace.values()) if source else 0
    seen = census.field_ttl if census else None
    keys = max(subexpiry, seen.estimated if seen else 0)
    if not keys or target is None:
        return
    evidence = {"keys": keys, "info_keyspace_subexpiry": subexpiry if source else None,
                "examples": seen.examples if seen else (), "target": target.label}
    if not target.hash_field_ttl:
        named = _names(seen.examples if seen else (), census.mode if census else "")
        yield blocker("HFE_UNSUPPORTED",
                      f"{keys} hashes have field TTLs ({named}); "
                      f"{target.label} has no hash field TTLs: the fields would never expire",
                      "migrate to Valkey 9.0+, or remove the field TTLs (HPERSIST) / accept losing them "
                      "(`migrate run --on-incompatible lossy`)", **evidence)
    else:
        yield info("HFE_REWRITTEN",
                   f"{keys} hashes have field TTLs; {target.label} supports them natively: they are rewritten "
                   "(HSET + HPEXPIREAT) and keep their field TTLs", "", **evidence)


def _names(examples: tuple[str, ...], mode: str) -> str:
    if examples:
        return "e.g. " + ", ".join(examples[:3]) + ("…" if len(examples) > 3 else "")
    return "an RDB summary does not name them" if mode == "rdb-file" else "none in the sample: run --full to name them"


@check("MODULE_KEYS_UNSUPPORTED", "MODULE_KEYS_PORTABLE")
def module_keys(profile: Profile) -> Iterator[Finding]:
    census = profile.key_census
    if census is None or not census.module_keys:
        return
    target_modules = _module_names(profile, "target")
    by_module: dict[str, list[tuple[str, int, tuple[str, ...]]]] = {}
    for type_name, group in sorted(census.module_keys.items()):
        fact = module_for_type(type_name)
        by_module.setdefault(fact.id if fact else type_name, []).append((type_name, group.estimated, group.examples))
    for module_id, types in by_module.items():
        yield _module_finding(module_id, types, target_modules, profile)


def _module_finding(module_id: str, types: list[tuple[str, int, tuple[str, ...]]], target_modules: set[str] | None,
                    profile: Profile) -> Finding:
    fact = next((m for m in MODULES if m.id == module_id), None)
    title = fact.title if fact else f"module type {module_id}"
    counts = {t: n for t, n, _ in types}
    examples = tuple(e for _, _, ex in types for e in ex)[:5]
    listing = ", ".join(f"{n} keys of type {t}" for t, n in counts.items())
    target = profile.target_identity.label if profile.target_identity else "the target"
    portable = fact is not None and fact.keys_portable and target_modules is not None and fact.counterpart in (
        target_modules)
    if portable and fact is not None:
        return warning("MODULE_KEYS_PORTABLE", f"{title}: {listing}; {target} loads {fact.counterpart}, which reads "
                       "them", fact.note, module=title, keys_by_type=counts, examples=examples)
    counterpart = (f"its Valkey counterpart is {fact.counterpart} ({fact.note})" if fact and fact.counterpart
                   else "no Valkey module replaces it")
    return blocker("MODULE_KEYS_UNSUPPORTED", f"{title}: {listing} cannot be moved to {target}; {counterpart}",
                   "recreate this data on the target with its own module, or leave these keys out (--exclude)",
                   module=title, keys_by_type=counts, examples=examples,
                   counterpart=fact.counterpart if fact else None)


def _module_names(profile: Profile, role: str) -> set[str] | None:
    server = getattr(profile, role)
    if server is None or server.modules is None:
        return None
    return {m.name.lower() for m in server.modules}


@check("MODULE_LOADED")
def modules_loaded(profile: Profile) -> Iterator[Finding]:
    source = profile.source
    if source is None or not source.modules:
        return
    census = profile.key_census
    target_modules = _module_names(profile, "target")
    for module in source.modules:
        fact = module_for_name(module.name)
        if fact is not None and census is not None and any(t in census.module_keys for t in fact.rdb_types):
            continue  # reported with its keys by module_keys
        yield _loaded_finding(module.name, fact, census, target_modules)


def _loaded_finding(name: str, fact: ModuleFact | None, census: Census | None,
                    target_modules: set[str] | None) -> Finding:
    where = "in the sample" if census is not None and not census.complete else "on the source"
    if fact is None:
        return warning("MODULE_LOADED", f"module {name!r} is loaded on the source (unknown to this tool); no keys "
                       f"of its types were found {where}", "check that the target loads an equivalent module",
                       module=name)
    counterpart = (f"Valkey counterpart: {fact.counterpart}" + (" (loaded on the target)"
                   if target_modules and fact.counterpart in target_modules else "")
                   if fact.counterpart else "no Valkey counterpart")
    return info("MODULE_LOADED", f"module {name!r} ({fact.title}) is loaded on the source; no keys of its types "
                f"found {where}; {counterpart}",
                "applications must not call its commands after the cutover (see COMMANDS_UNSUPPORTED)",
                module=name, types=fact.rdb_types)


@check("STREAM_CONSUMER_GROUPS")
def stream_groups(profile: Profile) -> Iterator[Finding]:
    census = profile.census
    if census is None or not census.streams_with_groups.count:
        return
    rewritten = "stream" in {t for t, per in census.conversion.by_type.items() if per.get("rewrite")}
    note = "; rewritten streams get new consumer seen/active times" if rewritten else ""
    yield info("STREAM_CONSUMER_GROUPS",
               f"{census.streams_with_groups.count} streams have {census.consumer_groups} consumer groups "
               f"({census.pending_entries} pending entries): groups, consumers and pending lists move with the key"
               f"{note}", "stop consumers at the cutover, then point them at the target",
               streams=census.streams_with_groups.count, groups=census.consumer_groups,
               pending=census.pending_entries, examples=census.streams_with_groups.examples)


@check("FUNCTIONS_TO_COPY")
def functions(profile: Profile) -> Iterator[Finding]:
    libraries = (profile.source.functions if profile.source else None) or (
        profile.rdb_file.functions if profile.rdb_file else ())
    if not libraries:
        return
    on_target = set(profile.target.functions or ()) if profile.target and profile.target.live else set()
    missing = [lib for lib in libraries if lib not in on_target]
    if missing:
        yield warning("FUNCTIONS_TO_COPY",
                      f"{len(missing)} function libraries exist on the source but not on the target: "
                      f"{', '.join(missing)}", "copy them: FUNCTION DUMP on the source, FUNCTION RESTORE on the "
                      "target (`migrate run` copies them; replication does too)", libraries=tuple(missing))


@check("RDB_FILE_UNREADABLE", "RDB_FILE", "RDB_EMPTY_KEYS")
def rdb_file(profile: Profile) -> Iterator[Finding]:
    facts = profile.rdb_file
    if facts is None:
        return
    if facts.error:
        yield blocker("RDB_FILE_UNREADABLE", f"RDB file {facts.path} cannot be read: {facts.error}",
                      "take a new snapshot (BGSAVE) and copy it again; check the file was copied whole",
                      path=facts.path, size=facts.size)
        return
    writer = facts.writer.label if facts.writer else "unknown writer"
    keys = facts.census.total if facts.census else 0
    yield info("RDB_FILE", f"RDB file {facts.path}: RDB {facts.rdb_version} written by {writer}, {keys} keys, "
               f"{facts.size} bytes", "", path=facts.path, rdb_version=facts.rdb_version, keys=keys,
               functions=facts.functions)
    if facts.empty is not None:
        yield empty_keys_finding("RDB_EMPTY_KEYS", f"RDB file {facts.path}", facts.empty)


def empty_keys_finding(code: str, where: str, empty: EmptyKeys) -> Finding:
    """Empty collections in a file: skipped by `migrate run` (and by a server loading the file, except empty intsets
    and zipmaps, for which Redis 7.0+ and Valkey refuse the whole file)."""
    refused = (f"; {empty.refused} of them (empty intsets or zipmaps) make Redis 7.0+ and Valkey refuse the whole "
               "file" if empty.refused else "")
    make = warning if empty.refused else info
    return make(code, f"{where} holds {empty.keys} empty collections: skipped, as a server loading the file skips "
                f"them{refused}", "nothing to do: `migrate run` skips and names them (an empty collection holds no "
                "data)", keys=empty.keys, refused=empty.refused, examples=empty.examples)


@check("AOF_UNREADABLE", "AOF_BASE_REFUSED", "AOF_COMMANDS_UNSUPPORTED", "AOF_MODULE_COMMANDS", "AOF_FILES",
       "AOF_TRUNCATED", "AOF_EMPTY_KEYS")
def aof_dir(profile: Profile) -> Iterator[Finding]:
    aof, target = profile.aof, profile.target_identity
    if aof is None:
        return
    if aof.error:
        yield blocker("AOF_UNREADABLE", f"AOF {aof.directory} cannot be loaded: {aof.error}",
                      aof.hint or "a server refuses it too: restore the files from a backup, or give the complete "
                      "directory", directory=aof.directory)
        return
    files = {f.name: f"{f.kind}, {f.format or '?'}" + (f" RDB {f.rdb_version}" if f.rdb_version else "")
             + f", {f.commands} commands" for f in aof.files}
    yield info("AOF_FILES", f"AOF {aof.directory} ({aof.layout}): {len(aof.files)} files (manifest "
               f"{aof.manifest or 'none'}), {aof.rdb_keys} keys in its RDB part, {sum(aof.commands.values())} "
               f"commands in databases {', '.join(map(str, aof.databases)) or '-'}, {aof.transactions} MULTI/EXEC "
               "blocks", "", files=files, commands=dict(sorted(aof.commands.items(), key=lambda kv: -kv[1])[:20]),
               history=aof.history)
    yield from _aof_truncation(aof)
    base = aof.base_rdb_version
    if target is not None and base is not None and not accepts_rdb_version(target.product, target.version, base,
                                                                            target.relaxed):
        yield warning("AOF_BASE_REFUSED", f"the AOF base file is RDB {base}, which {target.label} does not load: the "
                      "AOF directory cannot be copied to the target", "load it with `migrate run --strategy reload "
                      "--from-aof PATH` (converted key by key) instead of copying the files", rdb_version=base)
    yield from _aof_commands(aof.commands, profile)
    if aof.empty is not None:
        yield empty_keys_finding("AOF_EMPTY_KEYS", f"the RDB part of AOF {aof.directory}", aof.empty)


def _aof_truncation(aof: AofFacts) -> Iterator[Finding]:
    t = aof.truncation
    if t is None:
        return
    what = (f"ends inside a MULTI/EXEC block ({t.dropped_commands} commands a server reverts)"
            if t.reason == "open-transaction" else "ends inside a command")
    yield warning("AOF_TRUNCATED", f"the AOF's last file {t.file} {what}: a server loads it up to offset "
                  f"{t.loaded_up_to} of {t.size} (aof-load-truncated yes) and so does `migrate run --from-aof`; "
                  f"{t.size - t.loaded_up_to} bytes are not loaded", "expected after a crash or a full disk; take "
                  "a fresh copy if the writer is still running", file=t.file, loaded_up_to=t.loaded_up_to,
                  size=t.size, reason=t.reason, dropped_commands=t.dropped_commands)


def _aof_commands(commands: dict[str, int], profile: Profile) -> Iterator[Finding]:
    from checks.usage import lacks  # one rule for "the target lacks this command"

    target = profile.target_identity
    modules = {c: n for c, n in commands.items() if module_for_command(c) is not None}
    lacking = {c: n for c, n in _aof_commands_lacking(commands, profile).items() if c not in modules}
    if lacking:
        yield warning("AOF_COMMANDS_UNSUPPORTED", f"the AOF replays commands {target.label if target else 'the target'}"
                      f" lacks: {', '.join(sorted(lacking))}", "`migrate run --from-aof` translates what has an "
                      "equivalent and applies --on-incompatible to the rest (fail by default: nothing is flushed)",
                      commands=lacking)
    if modules:
        names = sorted({m.title for c in modules if (m := module_for_command(c)) is not None})
        missing = {c: n for c, n in modules.items() if target is None or lacks(profile, c)}
        make = blocker if missing and target is not None else warning
        yield make("AOF_MODULE_COMMANDS", f"the AOF replays {sum(modules.values())} commands of module(s) "
                   f"{', '.join(names)}" + (f", which {target.label} does not have" if missing and target else ""),
                   "load the module's counterpart on the target, or reload with --on-incompatible skip (the keys "
                   "they write are named)", commands=modules)


def _aof_commands_lacking(commands: dict[str, int], profile: Profile) -> dict[str, int]:
    from checks.usage import lacks  # one rule for "the target lacks this command"

    return {c: n for c, n in commands.items() if lacks(profile, c)}
