"""What this preflight could not see: refused commands, an unreachable or assumed target, a sampled census."""

from __future__ import annotations

from collections.abc import Iterator

from migrate.preflight.findings import Finding, blocker, info, warning
from migrate.preflight.profile import Profile
from migrate.preflight.registry import check


@check("CHECK_SKIPPED")
def gaps(profile: Profile) -> Iterator[Finding]:
    for server in (profile.source, profile.target):
        for gap in server.gaps if server is not None else ():
            yield warning("CHECK_SKIPPED", f"could not check {gap.what} on the {gap.role}: {gap.reason}",
                          "grant the preflight user this command (read-only), or accept the unchecked risk"
                          if gap.denied else "", role=gap.role, command=gap.what, reason=gap.reason)


@check("TARGET_UNREACHABLE", "NO_TARGET", "TARGET_ASSUMED")
def target_presence(profile: Profile) -> Iterator[Finding]:
    target = profile.target
    if target is None:
        yield warning("NO_TARGET", "no target given: only the source was checked (partial report)",
                      "give --target URL, or --target-version valkey:X.Y to check against a release")
    elif target.unreachable:
        yield blocker("TARGET_UNREACHABLE", f"the target could not be reached: {target.unreachable} (partial report: "
                      "source checks only" + (", compared with the assumed release" if target.assumed else "") + ")",
                      "check the target URL and that it is running, then run preflight again",
                      target=target.endpoint)
    elif target.assumed and target.identity is not None:
        yield info("TARGET_ASSUMED", f"target assumed to be {target.identity.label} (--target-version): its "
                   "configuration, memory, modules and commands were not checked", "give --target URL for a full "
                   "check")


@check("CENSUS_SAMPLED", "CENSUS_INCOMPLETE", "KEYS_VANISHED")
def census_coverage(profile: Profile) -> Iterator[Finding]:
    census = profile.census
    if census is None:
        return
    if census.note:
        yield warning("CENSUS_INCOMPLETE", f"the key census stopped early: {census.note}",
                      "run preflight again", examined=census.examined, total=census.total)
    elif not census.complete:
        yield info("CENSUS_SAMPLED", f"key census sampled {census.examined} of {census.total} keys: counts are "
                   "estimates and key names are examples", "run with --full for exact counts (bounded by "
                   "--rate-limit)", examined=census.examined, total=census.total)
    if census.vanished:
        yield info("KEYS_VANISHED", f"{census.vanished} keys expired or were deleted during the census", "",
                   vanished=census.vanished)
