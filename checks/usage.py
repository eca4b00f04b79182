"""How the source is used: commands applications call, ACL rules, keyspace notifications, renamed commands."""

from __future__ import annotations

from collections.abc import Iterator

from migrate.facts.commands import valkey_lacks
from migrate.facts.modules import ACL_CATEGORIES_VALKEY_LACKS, module_for_command
from migrate.preflight.findings import Finding, blocker, info, warning
from migrate.preflight.profile import Profile
from migrate.preflight.registry import check

# Commands preflight itself (or a client library's handshake) sends: they say nothing about the application.
OWN_COMMANDS = frozenset({"hello", "client|setinfo", "client|setname"})


def lacks(profile: Profile, command: str) -> bool:
    """Whether the target lacks this command: the target's own COMMAND INFO when it was asked, else the facts."""
    target = profile.target
    if target is None or target.identity is None:
        return False
    name = command.lower()
    if name in target.command_support:
        return not target.command_support[name]
    base = name.split("|")[0]
    fact = valkey_lacks(base)
    ident = target.identity
    if fact is not None:
        since = fact.valkey if ident.product == "valkey" else fact.redis
        return since is None or ident.version < since
    module = module_for_command(base)
    if module is not None and ident.product == "valkey":
        loaded = {m.name.lower() for m in target.modules or ()}
        return module.counterpart is None or module.counterpart not in loaded
    return False


def _since(command: str) -> str:
    fact = valkey_lacks(command.split("|")[0])
    if fact is not None:
        return f"Valkey {'.'.join(map(str, fact.valkey))}+" if fact.valkey else "no Valkey release"
    module = module_for_command(command)
    if module is not None:
        return f"module {module.title}" + (f" (Valkey: {module.counterpart})" if module.counterpart else "")
    return "not on the target"


@check("COMMANDS_UNSUPPORTED")
def commands_target_lacks(profile: Profile) -> Iterator[Finding]:
    source = profile.source
    if source is None or not source.commandstats or profile.target_identity is None:
        return
    used = {c: n for c, n in source.commandstats.items() if n and c not in OWN_COMMANDS}
    lacking = {c: used[c] for c in sorted(used, key=lambda c: -used[c]) if lacks(profile, c)}
    if lacking:
        label = profile.target_identity.label
        yield blocker("COMMANDS_UNSUPPORTED",
                      f"applications called {len(lacking)} commands that {label} does not have: "
                      + ", ".join(f"{c.upper()} ({n} calls)" for c, n in list(lacking.items())[:8]),
                      "change the application before the cutover, or pick a target release that has them",
                      calls=lacking, available_in={c: _since(c) for c in lacking},
                      note="INFO commandstats counts calls since the last restart or CONFIG RESETSTAT")


@check("ACL_CATEGORY_UNSUPPORTED", "ACL_COMMAND_UNSUPPORTED")
def acl_rules(profile: Profile) -> Iterator[Finding]:
    source, target = profile.source, profile.target
    if source is None or not source.acl_users or target is None or target.identity is None:
        return
    known = set(target.acl_categories) if target.acl_categories is not None else None
    bad_categories: dict[str, list[str]] = {}
    bad_commands: dict[str, list[str]] = {}
    for user in source.acl_users:
        for cat in (c for c in user.categories if c != "all"):  # @all is not a category ACL CAT lists
            if (cat not in known) if known is not None else cat in ACL_CATEGORIES_VALKEY_LACKS:
                bad_categories.setdefault(user.name, []).append("@" + cat)
        for cmd in user.commands:
            if lacks(profile, cmd):
                bad_commands.setdefault(user.name, []).append(cmd)
    label = target.identity.label
    if bad_categories:
        yield blocker("ACL_CATEGORY_UNSUPPORTED",
                      f"ACL users name categories {label} does not have: " + _users(bad_categories),
                      "edit these rules before copying the users (ACL SETUSER and ACL LOAD refuse unknown "
                      "categories)", users=bad_categories)
    if bad_commands:
        yield warning("ACL_COMMAND_UNSUPPORTED",
                      f"ACL users name commands {label} does not have: " + _users(bad_commands),
                      "drop these commands from the rules before copying the users", users=bad_commands)


def _users(by_user: dict[str, list[str]]) -> str:
    return "; ".join(f"{user}: {', '.join(names)}" for user, names in by_user.items())


@check("KEYSPACE_NOTIFICATIONS")
def keyspace_notifications(profile: Profile) -> Iterator[Finding]:
    source, target = profile.source, profile.target
    if source is None or not source.notify_keyspace_events or target is None or not target.live:
        return
    wanted, have = set(source.notify_keyspace_events), set(target.notify_keyspace_events or "")
    if not wanted <= have:
        yield warning("KEYSPACE_NOTIFICATIONS",
                      f"the source publishes keyspace notifications ({source.notify_keyspace_events!r}), the "
                      f"target {target.notify_keyspace_events or 'none'!r}: subscribers would stop receiving events",
                      f"CONFIG SET notify-keyspace-events {source.notify_keyspace_events} on the target",
                      source=source.notify_keyspace_events, target=target.notify_keyspace_events)


@check("COMMANDS_RENAMED", "COMMAND_COUNT")
def renamed_commands(profile: Profile) -> Iterator[Finding]:
    for server in (profile.source, profile.target):
        if server is None or not server.missing_standard:
            continue
        yield warning("COMMANDS_RENAMED",
                      f"the {server.role} does not know {', '.join(c.upper() for c in server.missing_standard)} "
                      "(renamed or disabled with rename-command)",
                      "applications and tools that call them fail there; align rename-command on both sides",
                      role=server.role, missing=server.missing_standard, command_count=server.command_count)
    counts = [s.command_count for s in (profile.source, profile.target) if s is not None and s.command_count]
    if len(counts) == 2:
        yield info("COMMAND_COUNT", f"COMMAND COUNT: source {counts[0]}, target {counts[1]}", "",
                   source=counts[0], target=counts[1])
