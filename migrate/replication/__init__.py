"""The replication protocol, both sides: migrate as a replica of the source (`ReplicaLink`) and as the primary of the
target (`ReplicaServer`). Strategies `sync` and `relay` are built on these; this package knows nothing of them."""

from migrate.replication.errors import LinkLostError
from migrate.replication.primary import (
    FullSyncResult,
    PrimaryOptions,
    PrimaryState,
    PrimaryStatus,
    ReplicaHello,
    ReplicaServer,
    file_chunks,
)
from migrate.replication.replica import (
    LinkOptions,
    LinkStatus,
    Position,
    RawRun,
    ReplicaLink,
    SnapshotInfo,
    StreamCommand,
    SyncKind,
    SyncStart,
)

__all__ = [
    "FullSyncResult",
    "LinkLostError",
    "LinkOptions",
    "LinkStatus",
    "Position",
    "PrimaryOptions",
    "PrimaryState",
    "PrimaryStatus",
    "RawRun",
    "ReplicaHello",
    "ReplicaLink",
    "ReplicaServer",
    "SnapshotInfo",
    "StreamCommand",
    "SyncKind",
    "SyncStart",
    "file_chunks",
]
