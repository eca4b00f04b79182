"""--on-incompatible: what happens to a key the target cannot hold as it is on the source.

fail (default) stops the run before anything of the key's batch is written; skip leaves the key out; lossy writes what
the target can hold when that is possible (e.g. a hash without its field TTLs) and skips the key otherwise. Skipped
and changed keys are always named in the report, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from migrate.errors import IncompatibleDataError
from migrate.render import display_key
from migrate.run.options import OnIncompatible
from migrate.run.tally import DbTally, KeyIssue


class Verdict(Enum):
    WRITE = "write"  # lossy write: the key is copied and listed as changed
    SKIP = "skip"  # the key is not copied and is listed as skipped


@dataclass(frozen=True)
class Incompatibility:
    key: bytes
    reason: str
    losses: tuple[str, ...] = ()  # what a lossy write loses; empty with writable=False
    writable: bool = False  # a lossy write is possible

    def describe(self) -> str:
        lost = f" (a lossy copy would drop: {', '.join(self.losses)})" if self.losses else ""
        return f"{self.reason}{lost}"


def judge(policy: OnIncompatible, db: int, issue: Incompatibility, tally: DbTally) -> Verdict:
    """Apply the policy to one key: raise (fail), or record the key as skipped or changed and say which."""
    if policy is OnIncompatible.FAIL:
        raise IncompatibleDataError(f"key {display_key(issue.key)} in db {db} cannot be copied as it is: "
                                    f"{issue.describe()}")
    if policy is OnIncompatible.LOSSY and issue.writable:
        tally.changed.append(KeyIssue(db, display_key(issue.key), "lost: " + ", ".join(issue.losses)))
        return Verdict.WRITE
    tally.skipped.append(KeyIssue(db, display_key(issue.key), issue.reason))
    return Verdict.SKIP
