"""When the reverse pass can be skipped: a counting proof that the target holds no key the source lacks.

The reverse pass SCANs every target key and asks the source about it, to find keys that exist only on the target.
It costs a full SCAN of the target plus an EXISTS of every key on the source. When neither server changed while
the forward pass ran, counting proves the same thing:
- the source did not change, so its SCAN returned each of its keys at least once (SCAN's guarantee); returning
  exactly as many keys as the source holds means each key exactly once;
- every one of those keys was seen on the target (none missing, none gone from both sides);
- the target did not change either and holds exactly that many keys: the keys seen are all it holds.
"Did not change" is read from counters that every write, expiry, eviction and save moves (data below, read before
the first SCAN and after the last comparison). Anything else runs the reverse pass: live traffic, a save that
completed, a key that expired, filters or sampling (the scan did not enumerate everything), several source databases
merged into one target database (their keys may overlap), `--reverse-scan always`.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.activity import Marks


@dataclass(frozen=True)
class Stillness:
    """Both servers' marks before the forward pass and after it."""

    source_before: Marks
    target_before: Marks
    source_after: Marks
    target_after: Marks

    @property
    def unchanged(self) -> bool:
        return self.source_before == self.source_after and self.target_before == self.target_after

    def proves_no_extra(self, source_db: int, target_db: int, scanned: int, seen_on_target: int) -> bool:
        """Whether the counts prove that target_db holds no key that source_db lacks (see the module docstring).
        `scanned`: keys the forward SCAN returned (no filter, no sampling); `seen_on_target`: how many of them the
        comparison found on the target."""
        held = self.source_after.keys(source_db)
        return (self.unchanged and scanned == held and seen_on_target == scanned
                and self.target_after.keys(target_db) == held)
