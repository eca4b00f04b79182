"""The map from the relay's own replication offsets (the stream the target replicates) to the source's.

Two streams, two offset spaces: the source's (`master_repl_offset` of the source, what the source's WAIT and our
`REPLCONF ACK` speak of) and the relay's (bytes migrate wrote to the target's stream: translated commands, the
SELECTs and MULTI/EXEC of RespWriter, and the PINGs and GETACKs of the ReplicaServer). After each round of
forwarding the relay records (relay offset after the round, source offset the round ends at). When the target
acknowledges relay offset A, every pair with a relay offset <= A is on the target, so the source offset of the last
such pair is what the target holds: the ACK migrate sends the source. Pairs are dropped once acknowledged, so the map
holds only what is in flight (bounded by the lag, one pair per round of up to a few thousand commands).

The source offset recorded for a round is the end of the last complete unit (a source MULTI/EXEC still open in the
translator is not on the target yet: its start is not acknowledged before its EXEC is forwarded).
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple


class Pair(NamedTuple):
    relay: int  # relay offset after the forwarded bytes
    source: int  # source offset those bytes bring the target to
    db: int  # source database selected there


class OffsetMap:
    def __init__(self, relay: int, source: int, db: int = 0) -> None:
        """Start from a full sync: the relay's offset of the RDB stands for the source offset of the snapshot."""
        self._pairs: deque[Pair] = deque()
        self.acked = Pair(relay, source, db)

    def record(self, relay: int, source: int, db: int) -> None:
        """The bytes up to `relay` bring the target to `source` (recorded in increasing order)."""
        last = self._pairs[-1] if self._pairs else self.acked
        if source < last.source or relay < last.relay:
            raise ValueError(f"offsets go back: ({relay}, {source}) after ({last.relay}, {last.source})")
        if source == last.source:
            return  # nothing new from the source (only PINGs or GETACKs moved the relay): the earlier pair says it
        self._pairs.append(Pair(relay, source, db))

    def acknowledge(self, relay: int) -> Pair:
        """The target acknowledged relay offset `relay`: the last pair it covers (what the target holds)."""
        pairs = self._pairs
        while pairs and pairs[0].relay <= relay:
            self.acked = pairs.popleft()
        return self.acked

    @property
    def last(self) -> Pair:
        """The last pair recorded (the source offset everything forwarded brings the target to)."""
        return self._pairs[-1] if self._pairs else self.acked

    def __len__(self) -> int:
        return len(self._pairs)
