"""What one server release can take, derived from the fact tables: the single value the RDB engine and the
converters are given about a target (never a client or a live identity: the engine stays pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from migrate.facts.commands import has_command, supports_hash_field_ttl
from migrate.facts.releases import Version, accepts_rdb_version, rdb_version_written
from migrate.facts.types import (
    checks_stream_counts,
    memory_usage_unsafe,
    readable_opcodes,
    readable_types,
    same_meaning,
)


@dataclass(frozen=True)
class Capabilities:
    product: str  # redis | valkey | keydb | dragonfly
    version: Version
    relaxed: bool = False  # Valkey 8.1+ `rdb-version-check relaxed`
    label: str = ""
    rdb_version: int | None = field(init=False)  # the RDB version this release writes (None: unknown release)
    hash_field_ttl: bool = field(init=False)  # stores hash field TTLs
    readable: frozenset[int] = field(init=False, repr=False)  # object type bytes it reads
    opcodes: frozenset[int] = field(init=False, repr=False)  # RDB opcodes its loader reads
    stream_counts_checked: bool = field(init=False)  # refuses streams whose counters disagree with their entries
    memory_usage_unsafe: bool = field(init=False)  # MEMORY USAGE of an empty list it may hold kills it

    def __post_init__(self) -> None:
        # Derived once: a planner asks these per payload signature, a writer per key.
        object.__setattr__(self, "rdb_version", rdb_version_written(self.product, self.version))
        object.__setattr__(self, "hash_field_ttl", supports_hash_field_ttl(self.product, self.version))
        object.__setattr__(self, "readable", readable_types(self.product, self.version))
        object.__setattr__(self, "opcodes", readable_opcodes(self.product, self.version))
        object.__setattr__(self, "stream_counts_checked", checks_stream_counts(self.product, self.version))
        object.__setattr__(self, "memory_usage_unsafe", memory_usage_unsafe(self.product, self.version))
        if not self.label:
            text = ".".join(map(str, self.version))
            object.__setattr__(self, "label", f"{self.product.capitalize()} {text}")

    def accepts_rdb(self, rdb_version: int) -> bool:
        """Whether it loads an RDB file or RESTORE payload of this version."""
        return accepts_rdb_version(self.product, self.version, rdb_version, self.relaxed)

    def reads_type(self, type_byte: int, dialect: str) -> bool:
        """Whether it reads this type byte in data of `dialect` ("redis" below RDB 80, "valkey" from 80)."""
        return type_byte in self.readable and same_meaning(type_byte, dialect, self.product)

    def reads_opcode(self, opcode: int) -> bool:
        """Whether its RDB loader reads this opcode (any other byte in opcode position is refused)."""
        return opcode in self.opcodes

    def has(self, command: str) -> bool:
        """Whether it has a command (or command option) of the command table."""
        return has_command(self.product, self.version, command)
