"""RDB format facts as data: object type bytes, opcodes, string encodings, module ids.

Sources: src/rdb.h of redis/redis and valkey-io/valkey (../shared/reference/compatibility.md). The two products agree
on every type byte up to 21 and on the opcodes 244-255; from type 22 and opcode 243 on they assign different meanings,
so every lookup that can differ takes the product (or the RDB version, which implies it: 12-79 Redis, 80+ Valkey).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class TypeInfo:
    byte: int
    name: str  # the constant's name in rdb.h, without the RDB_TYPE_ prefix
    logical: str  # the logical type as TYPE reports it (module values: "module")
    first_rdb_version: int  # first RDB version that could contain it
    product: str  # "any", "redis" or "valkey": who defines this meaning of the byte
    readable: bool = True  # False: known, but our reader cannot parse it


# Meanings shared by both products.
COMMON_TYPES: Final[tuple[TypeInfo, ...]] = (
    TypeInfo(0, "STRING", "string", 1, "any"),
    TypeInfo(1, "LIST", "list", 1, "any"),
    TypeInfo(2, "SET", "set", 1, "any"),
    TypeInfo(3, "ZSET", "zset", 1, "any"),
    TypeInfo(4, "HASH", "hash", 2, "any"),
    TypeInfo(5, "ZSET_2", "zset", 8, "any"),
    TypeInfo(6, "MODULE_PRE_GA", "module", 8, "any", readable=False),  # 4.0 RCs: no opcodes, cannot be skipped
    TypeInfo(7, "MODULE_2", "module", 8, "any"),
    TypeInfo(9, "HASH_ZIPMAP", "hash", 2, "any"),
    TypeInfo(10, "LIST_ZIPLIST", "list", 4, "any"),
    TypeInfo(11, "SET_INTSET", "set", 2, "any"),
    TypeInfo(12, "ZSET_ZIPLIST", "zset", 4, "any"),
    TypeInfo(13, "HASH_ZIPLIST", "hash", 4, "any"),
    TypeInfo(14, "LIST_QUICKLIST", "list", 7, "any"),
    TypeInfo(15, "STREAM_LISTPACKS", "stream", 9, "any"),
    TypeInfo(16, "HASH_LISTPACK", "hash", 10, "any"),
    TypeInfo(17, "ZSET_LISTPACK", "zset", 10, "any"),
    TypeInfo(18, "LIST_QUICKLIST_2", "list", 10, "any"),
    TypeInfo(19, "STREAM_LISTPACKS_2", "stream", 10, "any"),
    TypeInfo(20, "SET_LISTPACK", "set", 11, "any"),
    TypeInfo(21, "STREAM_LISTPACKS_3", "stream", 11, "any"),
)

# Redis after the fork (RDB 12+, REDIS magic).
REDIS_TYPES: Final[tuple[TypeInfo, ...]] = (
    TypeInfo(22, "HASH_METADATA_PRE_GA", "hash", 12, "redis"),  # 7.4 release candidates: absolute field TTLs
    TypeInfo(23, "HASH_LISTPACK_EX_PRE_GA", "hash", 12, "redis"),
    TypeInfo(24, "HASH_METADATA", "hash", 12, "redis"),  # 7.4 GA: field TTLs relative to a min-expire prefix
    TypeInfo(25, "HASH_LISTPACK_EX", "hash", 12, "redis"),
    TypeInfo(26, "STREAM_LISTPACKS_4", "stream", 13, "redis", readable=False),  # Redis 8.6 (IDMP), UNCONFIRMED
)

# Valkey 9+ (RDB 80+, VALKEY magic).
VALKEY_TYPES: Final[tuple[TypeInfo, ...]] = (
    TypeInfo(22, "HASH_2", "hash", 80, "valkey"),  # hashtable hash whose fields carry absolute expiries
    TypeInfo(23, "PATH_HASH", "hash", 81, "valkey", readable=False),  # Valkey 9.2; format not implemented here
)

# Opcodes: special "types" counted down from 255.
OP_EOF: Final = 255
OP_SELECTDB: Final = 254
OP_EXPIRETIME: Final = 253  # seconds, int32 little-endian (RDB < 3)
OP_EXPIRETIME_MS: Final = 252  # milliseconds, int64 little-endian
OP_RESIZEDB: Final = 251
OP_AUX: Final = 250
OP_FREQ: Final = 249
OP_IDLE: Final = 248
OP_MODULE_AUX: Final = 247
OP_FUNCTION_PRE_GA: Final = 246  # Redis 7.0 RC1/RC2 only; servers refuse it too
OP_FUNCTION2: Final = 245
OP_SLOT_INFO: Final = 244  # Redis 7.4+ cluster mode; Valkey reads it, writes the aux field "slot-info" instead
OP_SLOT_IMPORT: Final = 243  # Valkey 9.0+: atomic slot migration in progress (mandatory)
OP_KEY_META: Final = 243  # Redis 8.6+ (RDB 13, UNCONFIRMED): per-key module metadata; not readable here

COMMON_OPCODES: Final[dict[int, str]] = {
    OP_EOF: "EOF",
    OP_SELECTDB: "SELECTDB",
    OP_EXPIRETIME: "EXPIRETIME",
    OP_EXPIRETIME_MS: "EXPIRETIME_MS",
    OP_RESIZEDB: "RESIZEDB",
    OP_AUX: "AUX",
    OP_FREQ: "FREQ",
    OP_IDLE: "IDLE",
    OP_MODULE_AUX: "MODULE_AUX",
    OP_FUNCTION_PRE_GA: "FUNCTION_PRE_GA",
    OP_FUNCTION2: "FUNCTION2",
    OP_SLOT_INFO: "SLOT_INFO",
}
REDIS_OPCODES: Final[dict[int, str]] = {OP_KEY_META: "KEY_META"}
VALKEY_OPCODES: Final[dict[int, str]] = {OP_SLOT_IMPORT: "SLOT_IMPORT"}

# Length encoding: the two high bits of the first byte.
LEN_6BIT: Final = 0
LEN_14BIT: Final = 1
LEN_32BIT: Final = 0x80
LEN_64BIT: Final = 0x81
LEN_ENCVAL: Final = 3  # "11xxxxxx": a special string encoding follows, xxxxxx says which
ENC_INT8: Final = 0
ENC_INT16: Final = 1
ENC_INT32: Final = 2
ENC_LZF: Final = 3

# Serialized module values (type 7) and module aux data: a sequence of (opcode, value) ending with EOF.
MODULE_OPCODE_EOF: Final = 0
MODULE_OPCODE_SINT: Final = 1
MODULE_OPCODE_UINT: Final = 2
MODULE_OPCODE_FLOAT: Final = 3
MODULE_OPCODE_DOUBLE: Final = 4
MODULE_OPCODE_STRING: Final = 5

# Module ids: 9 characters of this charset, 6 bits each, shifted left 10 bits, OR a 10-bit encoding version.
MODULE_ID_CHARSET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MODULE_ENCVER_BITS: Final = 10

# Quicklist 2 node containers.
QUICKLIST_PLAIN: Final = 1
QUICKLIST_PACKED: Final = 2

# Stream listpack entry flags (t_stream.c).
STREAM_ITEM_FLAG_DELETED: Final = 1
STREAM_ITEM_FLAG_SAMEFIELDS: Final = 2

# File magic: "REDIS%04d" (Redis, Valkey < 9), "VALKEY%03d" (Valkey 9+).
MAGIC_REDIS: Final = b"REDIS"
MAGIC_VALKEY: Final = b"VALKEY"
VALKEY_FIRST_OWN_VERSION: Final = 80  # RDB versions >= 80 are Valkey's; 12-79 are Redis's ("foreign" to Valkey)
CHECKSUM_FROM_VERSION: Final = 5  # RDB files carry a CRC64 after EOF from version 5 on
MAX_KNOWN_VERSION: Final[dict[str, int]] = {"redis": 12, "valkey": 81}  # highest version this reader accepts

_COMMON_BY_BYTE: Final = {t.byte: t for t in COMMON_TYPES}
_REDIS_BY_BYTE: Final = {**_COMMON_BY_BYTE, **{t.byte: t for t in REDIS_TYPES}}
_VALKEY_BY_BYTE: Final = {**_COMMON_BY_BYTE, **{t.byte: t for t in VALKEY_TYPES}}


def product_of_version(rdb_version: int | None) -> str:
    """Who defines type bytes 22+ for data of this RDB version: "redis" (< 80), "valkey" (80+), "any" (unknown)."""
    if rdb_version is None:
        return "any"
    return "valkey" if rdb_version >= VALKEY_FIRST_OWN_VERSION else "redis"


def type_info(type_byte: int, rdb_version: int | None = None) -> TypeInfo | None:
    """The meaning of an object type byte for data of this RDB version (None: unknown byte).

    Without a version, bytes 22+ are looked up as Valkey's first, then Redis's (the logical type is "hash" either
    way for 22-25).
    """
    product = product_of_version(rdb_version)
    if product == "valkey":
        return _VALKEY_BY_BYTE.get(type_byte)
    if product == "redis":
        return _REDIS_BY_BYTE.get(type_byte)
    return _VALKEY_BY_BYTE.get(type_byte) or _REDIS_BY_BYTE.get(type_byte)


def type_name(type_byte: int, rdb_version: int | None = None) -> str:
    info = type_info(type_byte, rdb_version)
    return info.name if info else f"UNKNOWN_{type_byte}"


def logical_type(type_byte: int, rdb_version: int | None = None) -> str:
    """The logical type ("string", "list", "set", "zset", "hash", "stream", "module") of an object type byte."""
    info = type_info(type_byte, rdb_version)
    if info is None:
        raise ValueError(f"unknown RDB object type byte {type_byte}")
    return info.logical


def opcode_name(opcode: int, product: str = "any") -> str | None:
    if opcode in COMMON_OPCODES:
        return COMMON_OPCODES[opcode]
    if product == "valkey":
        return VALKEY_OPCODES.get(opcode)
    if product == "redis":
        return REDIS_OPCODES.get(opcode)
    return VALKEY_OPCODES.get(opcode) or REDIS_OPCODES.get(opcode)


def is_object_type(type_byte: int, rdb_version: int | None = None) -> bool:
    return type_info(type_byte, rdb_version) is not None


def module_type_name(module_id: int) -> str:
    """The 9-character module type name encoded in a module id (e.g. "ReJSON-RL", "ft_index0")."""
    bits = module_id >> MODULE_ENCVER_BITS
    chars = []
    for _ in range(9):
        chars.append(MODULE_ID_CHARSET[bits & 63])
        bits >>= 6
    return "".join(reversed(chars))


def module_encoding_version(module_id: int) -> int:
    return module_id & ((1 << MODULE_ENCVER_BITS) - 1)


def module_id(type_name_: str, encver: int) -> int:
    """Inverse of module_type_name/module_encoding_version (used to build test payloads and to look ids up)."""
    if len(type_name_) != 9 or any(ch not in MODULE_ID_CHARSET for ch in type_name_):
        raise ValueError(f"module type names are 9 characters of A-Z a-z 0-9 - _: {type_name_!r}")
    bits = 0
    for ch in type_name_:
        bits = (bits << 6) | MODULE_ID_CHARSET.index(ch)
    return (bits << MODULE_ENCVER_BITS) | (encver & ((1 << MODULE_ENCVER_BITS) - 1))
