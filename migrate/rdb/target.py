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
from migrate.facts.capabilities import Capabilities
from migrate.facts.releases import Version, parse_release
from migrate.rdb.writer import header

if TYPE_CHECKING:  # migrate.identity imports redis-py: ~20 MB of RSS a file-to-file transcode does not need
    from migrate.identity import ServerIdentity

SUPPORTED_PRODUCTS = ("redis", "valkey")


@dataclass(frozen=True)
class TargetFormat:
    """The target release as far as an RDB file is concerned: its Capabilities (migrate.facts: RDB version written,
    type bytes and opcodes its loader reads, hash field TTLs), plus what only a live server can tell."""

    capabilities: Capabilities
    modules: frozenset[str] = field(default_factory=frozenset)  # module type names it has loaded (9 characters)
    databases: int | None = None  # its `databases` setting when known (a file's SELECTDB beyond it is refused)

    @classmethod
    def for_release(cls, product: str, version: Version, *, modules: frozenset[str] = frozenset(),
                    databases: int | None = None) -> TargetFormat:
        capabilities = Capabilities(product.lower(), version)
        if capabilities.product not in SUPPORTED_PRODUCTS or capabilities.rdb_version is None:
            raise ConfigError(f"no RDB format facts for {product} {'.'.join(map(str, version))}",
                              "targets are redis or valkey releases, e.g. valkey:8.1, valkey:9.1, redis:7.0")
        return cls(capabilities, modules, databases)

    @classmethod
    def from_identity(cls, identity: ServerIdentity, *, modules: frozenset[str] = frozenset()) -> TargetFormat:
        """The format a live server loads (its product and version; its `databases` when it was readable)."""
        return cls.for_release(identity.product, identity.version, modules=modules, databases=identity.databases)

    @property
    def product(self) -> str:
        return self.capabilities.product

    @property
    def version(self) -> Version:
        return self.capabilities.version

    @property
    def rdb_version(self) -> int:
        assert self.capabilities.rdb_version is not None  # for_release refuses releases without one
        return self.capabilities.rdb_version

    @property
    def field_ttls(self) -> bool:
        return self.capabilities.hash_field_ttl

    @property
    def label(self) -> str:
        return self.capabilities.label

    @property
    def magic(self) -> bytes:
        """The 9-byte file header: REDIS0011 for Valkey 8.x, VALKEY080 for Valkey 9.0/9.1, REDIS0012 for Redis 8."""
        return header(self.rdb_version)

    def reads_type(self, type_byte: int, dialect: str) -> bool:
        """Whether the loader reads this type byte of data written in `dialect` as what it is."""
        return self.capabilities.reads_type(type_byte, dialect)

    def reads_opcode(self, opcode: int) -> bool:
        return self.capabilities.reads_opcode(opcode)

    def has_module(self, module_type: str | None) -> bool:
        """The hook for targets with modules: a module value or module aux data of this type is passed through."""
        return module_type is not None and module_type in self.modules


def target_format(spec: str, *, modules: frozenset[str] = frozenset()) -> TargetFormat:
    """`valkey:8.1`, `valkey-9.1.2`, `redis:7.0` -> the TargetFormat of that release (ConfigError otherwise)."""
    try:
        product, version, _ = parse_release(spec)
    except ValueError:
        raise ConfigError(f"bad target version {spec!r}", "use PRODUCT:VERSION, e.g. valkey:8.1 or redis:7.0") from None
    return TargetFormat.for_release(product, version, modules=modules)
