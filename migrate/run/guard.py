"""The target is the truth, not the checkpoint: a replay checks what the target holds against what it wrote.

A target that restarted without persisting (or was flushed by someone) holds fewer keys than the checkpoint says were
written; resuming from the checkpoint, or carrying on after a reconnect, would then report keys as copied that are
gone. The run notices it (a new run_id, and a key count below what was written into a database) and copies the
databases that lost keys again from the start. A source that restarted invalidates the SCAN cursors of the databases
not finished yet: those are scanned again from the start too. Leftovers of an interrupted run (temporary keys of a
chunked copy) are removed on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Final

from migrate.connection import with_retries
from migrate.logs import get_logger
from migrate.rdb.rewrite import TEMP_KEY_MARK
from migrate.run.checkpoint import Checkpoint, DbState
from migrate.run.session import dbsize
from migrate.server import Server

log = get_logger(__name__)

MAX_RECOVERIES: Final = 3  # a target restarting over and over is a failure to report, not to retry forever


class TargetRestarted(Exception):
    """Raised inside the copy loop when the target's run_id changed: the loop re-checks what the target holds."""


def run_id(server: Server) -> str:
    info = with_retries(partial(server.client.info, "server"), server.settings, "INFO server", server.endpoint,
                        server.role)
    return str(info.get("run_id", ""))


@dataclass
class Guard:
    source: Server
    target: Server
    checkpoint: Checkpoint
    dbs: list[int]  # source databases of the run

    def reconcile(self) -> list[str]:
        """Bring the checkpoint in line with the servers as they are now; the notes say what was redone and why."""
        notes = []
        source_id, target_id = run_id(self.source), run_id(self.target)
        restarted = self.checkpoint.source_run_id not in ("", source_id)
        if restarted:
            notes += self._rescan_unfinished()
        notes += self._redo_lost(target_restarted=self.checkpoint.target_run_id not in ("", target_id))
        self.checkpoint.source_run_id, self.checkpoint.target_run_id = source_id, target_id
        return notes

    def target_changed(self) -> bool:
        return run_id(self.target) != self.checkpoint.target_run_id

    def _rescan_unfinished(self) -> list[str]:
        started = [db for db in self.dbs if not self.checkpoint.dbs[db].done and self.checkpoint.dbs[db].cursor]
        for db in started:
            _restart(self.checkpoint.dbs[db])
        if not started:
            return []
        return [f"the source restarted since the checkpoint: its SCAN cursors are void, so db "
                f"{', '.join(map(str, started))} {'is' if len(started) == 1 else 'are'} scanned again from the start"]

    def _redo_lost(self, target_restarted: bool) -> list[str]:
        by_target: dict[int, list[int]] = {}
        for db in self.dbs:
            by_target.setdefault(self.checkpoint.dbs[db].tally.target_db, []).append(db)
        notes = []
        for target_db, sources in sorted(by_target.items()):
            states = [self.checkpoint.dbs[db] for db in sources]
            # Keys with an expiry may be gone legitimately: only the others must all be there.
            must_hold = sum(s.tally.copied - s.tally.volatile for s in states)
            held = dbsize(self.target, target_db)
            if held >= must_hold:
                continue
            for state in states:
                _restart(state)
            why = "the target restarted and" if target_restarted else "the target"
            notes.append(f"{why} holds {held:,} keys in db {target_db} where this run had written {must_hold:,} "
                         f"(keys with an expiry aside): source db {', '.join(map(str, sources))} copied again from "
                         "the start")
            log.warning("target lost keys", target_db=target_db, held=held, written=must_hold)
        return notes

    def remove_temp_keys(self, target_dbs: list[int]) -> int:
        """Delete the temporary keys a killed run left behind (they would expire within the hour anyway)."""
        removed = 0
        for db in sorted(set(target_dbs)):
            channel = self.target.channels.channel(db)
            cursor = b"0"
            while True:
                cursor, keys = channel.command("SCAN", cursor, "MATCH", b"*" + TEMP_KEY_MARK + b"*", "COUNT", 1000)
                ours = [k for k in keys if _is_temp_key(k)]
                if ours:
                    removed += int(channel.command("DEL", *ours))
                if cursor == b"0":
                    break
        return removed


def _restart(state: DbState) -> None:
    state.cursor, state.done, state.tally = 0, False, state.tally.fresh()


def _is_temp_key(key: bytes) -> bool:
    """`{tag}migrate-tmp:<16 hex digits>`, as migrate.rdb.rewrite.temp_key makes them: never a user's key."""
    head, _, tail = key.partition(b"}" + TEMP_KEY_MARK)
    return head.startswith(b"{") and len(tail) == 16 and all(c in b"0123456789abcdef" for c in tail)
