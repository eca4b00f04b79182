"""Cluster errors: each one line with a hint, never a password (endpoints print redacted)."""

from __future__ import annotations

from migrate.errors import ConfigError, ConnectError, MigrationError


class NotAClusterError(ConfigError):
    default_hint = "the server has cluster support disabled (cluster_enabled:0): use it as a standalone server"


class ClusterUnavailableError(ConnectError):
    """No seed or node of the cluster answered."""

    default_hint = "check the addresses and that the cluster nodes are running"


class ClusterUnhealthyError(MigrationError):
    """The cluster answered but is not fit for the operation: cluster_state fail, slots not covered, nodes failing."""

    default_hint = "fix the cluster (CLUSTER INFO / CLUSTER NODES on any node), then rerun"


class ClusterDownError(MigrationError):
    """The cluster kept answering CLUSTERDOWN (or a failed node kept its slots) for longer than the router waits."""

    default_hint = "the cluster is down or a primary failed without a replica to take over: repair it, then --resume"


class RedirectLoopError(MigrationError):
    """A command was redirected more times than the router allows (the slot map keeps changing)."""

    default_hint = "a resharding or failover is in progress: wait until it settles, then --resume"


class UncertainWriteError(MigrationError):
    """A transaction (MULTI/EXEC unit) was sent but its connection was lost before EXEC's reply: it may or may not
    have been applied, and the router does not resend units (they need not be idempotent)."""

    default_hint = "rewrite the key from the start (a new temporary key), then continue"
