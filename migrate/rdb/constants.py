"""RDB file format constants: opcodes, length and string encodings, module ids, file magic.

Sources: src/rdb.h of redis/redis and valkey-io/valkey (docs/compatibility.md). The two products agree on the opcodes
244-255; opcode 243 means different things to them. Object type bytes and what they mean per product are facts shared
with the rest of the tool: migrate.facts.types.
"""

from __future__ import annotations

from typing import Final

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
CHECKSUM_FROM_VERSION: Final = 5  # RDB files carry a CRC64 after EOF from version 5 on
MAX_KNOWN_VERSION: Final[dict[str, int]] = {"redis": 12, "valkey": 81}  # highest version this reader accepts

def opcode_name(opcode: int, product: str = "any") -> str | None:
    if opcode in COMMON_OPCODES:
        return COMMON_OPCODES[opcode]
    if product == "valkey":
        return VALKEY_OPCODES.get(opcode)
    if product == "redis":
        return REDIS_OPCODES.get(opcode)
    return VALKEY_OPCODES.get(opcode) or REDIS_OPCODES.get(opcode)


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
