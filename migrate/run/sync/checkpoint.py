"""The resumable state of a sync: the replication id and the applied offset (with the source database selected
there), whether the target databases belong to the sync, and the resyncs so far. Written atomically with a checksum,
bound to the servers and the selection (like replay's checkpoint) and never holding a secret.

The checkpoint is a hint: the marker key on the target (migrate.stream.marker) says what the target really holds, and
a resume uses the marker when the two disagree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from migrate.errors import BadInputError, ConfigError
from migrate.run.checkpoint import read_sealed, sealed, write_atomic

FORMAT: Final = "sync-1"


@dataclass
class SyncCheckpoint:
    path: Path
    fingerprint: dict[str, Any]
    # The target databases of the sync were empty when it began (or --flush-target emptied them): everything in them
    # is the sync's, so a full resync may empty them again (a deleted source key must not survive on the target).
    owns_target: bool
    phase: str = "snapshot"  # snapshot: no stream position yet | streaming
    replid: str | None = None
    offset: int = 0
    db: int = 0
    full_resyncs: int = 0
    partial_resyncs: int = 0
    started_at: float = field(default_factory=time.time)
    saved_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # what one strategy adds (relay: its address); no secret

    def data(self) -> dict[str, Any]:
        return {"format": FORMAT, "fingerprint": self.fingerprint, "owns_target": self.owns_target,
                "phase": self.phase, "replid": self.replid, "offset": self.offset, "db": self.db,
                "full_resyncs": self.full_resyncs, "partial_resyncs": self.partial_resyncs,
                "started_at": self.started_at, "saved_at": time.time(), "extra": self.extra}

    def save(self) -> None:
        data = self.data()
        try:
            write_atomic(self.path, sealed(data))
        except OSError as exc:
            raise ConfigError(f"cannot write the checkpoint {self.path}: {exc.strerror or exc}",
                              "give --checkpoint FILE in a folder this user can write") from None
        self.saved_at = time.monotonic()

    def save_every(self, seconds: float) -> None:
        if time.monotonic() - self.saved_at >= seconds:
            self.save()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path, fingerprint: dict[str, Any]) -> SyncCheckpoint:
        data = read_sealed(path, FORMAT, "a checkpoint of `migrate run --strategy sync` or relay", fingerprint,
                           "resume with the same source, target and databases, or start over without --resume")
        try:
            return cls(path, fingerprint, bool(data["owns_target"]), str(data["phase"]), data.get("replid"),
                       int(data["offset"]), int(data["db"]), int(data["full_resyncs"]),
                       int(data["partial_resyncs"]), float(data["started_at"]), extra=dict(data.get("extra") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"checkpoint {path} is damaged: {exc}") from None

