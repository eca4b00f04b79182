"""Version and format facts as data: each fact lives in exactly one of these modules, and the RDB engine, the checks
and the executors import it from there. Provenance: docs/compatibility.md (measured here, or read in the servers'
source) and the comments beside each table.

- releases: which RDB version each release writes and which it loads (strict and relaxed Valkey), version parsing;
- types: RDB object type bytes, their logical types, which bytes each release reads, field-TTL and module types;
- commands: the first release of each command (and command option) per product, the standard command set, and what
  each migration strategy needs;
- modules: Redis modules, their RDB type names and commands, and their Valkey counterparts;
- digests: what DEBUG DIGEST-VALUE covers and which releases give the same digest for the same value;
- capabilities: a target release's capabilities derived from the tables above, the one value the engine is given.
"""
