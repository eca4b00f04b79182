"""Redis/Valkey Cluster support: the topology read from any node, a slot router for pipelined writes, per-shard readers.

- `topology`: discover(seeds) -> Topology | Standalone; the slot map, roles, addresses and health as one frozen value.
- `router`: SlotRouter executes pre-encoded single-key commands (and MULTI units) on the primaries owning their slots,
  following MOVED / ASK / TRYAGAIN / CLUSTERDOWN and failovers.
- `readers`: one connection per source shard (its primary, or a replica with READONLY) to SCAN that node's keys.
- `links`: the node connection (the shared Channel; its receive keeps what a broken connection delivered; READONLY).
"""
