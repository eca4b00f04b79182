"""What the users may do: every right each way of migrating lacks, on both sides, found in one pass; and a keyspace
preflight could not read (which would otherwise look like an empty source)."""

from __future__ import annotations

from collections.abc import Iterator

from migrate.preflight.findings import Finding, blocker, info, warning
from migrate.preflight.profile import Profile, RightsGap
from migrate.preflight.registry import check

# The way preflight recommends first when it works (live replay); a gap in the others is a warning, since another
# strategy can be chosen.
DEFAULT_STRATEGY = "replay"


@check("KEYSPACE_UNREADABLE")
def keyspace_unreadable(profile: Profile) -> Iterator[Finding]:
    source = profile.source
    if source is None or not source.live or source.keyspace:
        return
    denied = [g.what for g in source.gaps if g.denied and g.what in ("INFO keyspace", "DBSIZE")]
    if denied:
        yield blocker("KEYSPACE_UNREADABLE", "the source user cannot read the keyspace (" + ", ".join(denied)
                      + " refused): preflight cannot tell how many keys there are, so \"0 keys\" would be false",
                      "grant the preflight user +info and +select +dbsize, then run preflight again",
                      refused=denied)


@check("RIGHTS_MISSING", "RIGHTS_MISSING_OPTIONAL")
def rights_missing(profile: Profile) -> Iterator[Finding]:
    for gap in profile.rights:
        missing = (*gap.denied, *gap.unknown)
        if missing:
            severity = blocker if gap.strategy == DEFAULT_STRATEGY else warning
            yield severity("RIGHTS_MISSING", _message(gap), _grant(missing), strategy=gap.strategy, role=gap.role,
                           denied=list(gap.denied), renamed_or_disabled=list(gap.unknown))
        if gap.optional or gap.unchecked:
            yield info("RIGHTS_MISSING_OPTIONAL",
                       f"{_verb(gap)} on the {gap.role}: optional commands missing "
                       f"({', '.join(gap.optional) or '-'}); not checked ({', '.join(gap.unchecked) or '-'})",
                       _grant(gap.optional), strategy=gap.strategy, role=gap.role)


def _verb(gap: RightsGap) -> str:
    return "migrate verify" if gap.strategy == "verify" else f"--strategy {gap.strategy}"


def _message(gap: RightsGap) -> str:
    parts = []
    if gap.denied:
        parts.append("may not run " + ", ".join(c.upper().replace("|", " ") for c in gap.denied))
    if gap.unknown:
        parts.append("lacks (renamed or disabled) " + ", ".join(c.upper().replace("|", " ") for c in gap.unknown))
    return f"{_verb(gap)}: the {gap.role} user " + "; ".join(parts)


def _grant(commands: tuple[str, ...]) -> str:
    if not commands:
        return ""
    return "ACL SETUSER <user> " + " ".join(f"+{c}" for c in commands) + " (README.md, \"Minimum rights\")"
