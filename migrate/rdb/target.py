"""What an RDB file must look like for one target release: a small frozen value, derived from the fact tables.

`TargetFormat` says which RDB version (and so which magic) to write, which object type bytes and opcodes the target's
loader reads, whether it stores hash field TTLs, and which module types it has. It is derived from migrate.facts
(RDB version written, hash field TTLs) and migrate.rdb.compat (type bytes and opcodes read per release), for a
`PRODUCT:VERSION` spec like `valkey:8.1` or for a live server's ServerIdentity. No fact is repeated here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from migrate.errors import ConfigError
from migrate.facts import Version, parse_version, rdb_version_written, supports_hash_field_ttl
from migrate.rdb import compat
from migrate.rdb.writer import header

if TYPE_CHECKING:  # migrate.identity imports redis-py: ~20 MB of RSS a file-to-file transcode does not need
    from migrate.identity import ServerIdentity

# Type bytes below 22 mean the same to Redis and Valkey; from 22 on each product has its own (constants.py).
SHARED_TYPES_BELOW = 22
SUPPORTED_PRODUCTS = ("redis", "valkey")


@dataclass(frozen=True)
class TargetFormat:
    """The target release as far as an RDB file is concerned."""

    product: str  # "redis" or "valkey": whose meaning of type bytes 22+ the file must use
    version: Version
    rdb_version: int  # the version to write in the header (the release's own)
    type_bytes: frozenset[int]  # object type bytes its loader reads (bytes >= 22 in its own product's meaning)
    opcodes: frozenset[int]  # opcodes its loader reads
    field_ttls: bool  # stores hash field TTLs (Redis 7.4+, Valkey 9.0+)
    modules: frozenset[str] = field(default_factory=frozenset)  # module type names it has loaded (9 characters)
    databases: int | None = None  # its `databases` setting when known (a file's SELECTDB beyond it is refused)

    @classmethod
    def for_release(cls, product: str, version: Version, *, modules: frozenset[str] = frozenset(),
                    databases: int | None = None) -> TargetFormat:
        product = product.lower()
        rdb_version = rdb_version_written(product, version)
        if product not in SUPPORTED_PRODUCTS or rdb_version is None:
            raise ConfigError(f"no RDB format facts for {product} {'.'.join(map(str, version))}",
                              "targets are redis or valkey releases, e.g. valkey:8.1, valkey:9.1, redis:7.0")
        return cls(product, version, rdb_version, compat.readable_types(product, version),
                   compat.readable_opcodes(product, version), supports_hash_field_ttl(product, version),
                   modules, databases)

    @classmethod
    def from_identity(cls, identity: ServerIdentity, *, modules: frozenset[str] = frozenset()) -> TargetFormat:
        """The format a live server loads (its product and version; its `databases` when it was readable)."""
        return cls.for_release(identity.product, identity.version, modules=modules, databases=identity.databases)

    @property
    def magic(self) -> bytes:
        """The 9-byte file header: REDIS0011 for Valkey 8.x, VALKEY080 for Valkey 9.0/9.1, REDIS0012 for Redis 8."""
        return header(self.rdb_version)

    @property
    def label(self) -> str:
        return f"{self.product.capitalize()} {'.'.join(map(str, self.version))}"

    def reads_type(self, type_byte: int, dialect: str) -> bool:
        """Whether the loader reads this type byte of data written in `dialect` ("redis" or "valkey") as what it is:
        a byte >= 22 means something else to the other product (Redis 22 is not Valkey's HASH_2)."""
        if type_byte not in self.type_bytes:
            return False
        return type_byte < SHARED_TYPES_BELOW or dialect == self.product

    def reads_opcode(self, opcode: int) -> bool:
        return opcode in self.opcodes

    def has_module(self, module_type: str | None) -> bool:
        """The hook for targets with modules: a module value or module aux data of this type is passed through."""
        return module_type is not None and module_type in self.modules


def target_format(spec: str, *, modules: frozenset[str] = frozenset()) -> TargetFormat:
    """`valkey:8.1`, `valkey-9.1.2`, `redis:7.0` -> the TargetFormat of that release (ConfigError otherwise)."""
    parts = spec.strip().replace("-", ":").split(":")
    if len(parts) < 2 or not parts[1].strip()[:1].isdigit():
        raise ConfigError(f"bad target version {spec!r}", "use PRODUCT:VERSION, e.g. valkey:8.1 or redis:7.0")
    return TargetFormat.for_release(parts[0].strip(), parse_version(parts[1]), modules=modules)
