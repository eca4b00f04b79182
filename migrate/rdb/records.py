"""What the streaming RDB reader yields, in file order."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AuxField:
    name: str
    value: bytes
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SelectDb:
    db: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ResizeDb:
    db_size: int
    expires_size: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key. `bytes([type_byte]) + payload` + a DUMP footer is a RESTORE payload for the same value."""

    db: int
    key: bytes
    type_byte: int
    expire_ms: int | None  # absolute unix time in ms
    idle: int | None  # LRU idle seconds (only when the writer used an LRU maxmemory-policy)
    freq: int | None  # LFU counter (only when the writer used an LFU maxmemory-policy)
    payload: bytes = field(repr=False)  # serialized object without the type byte; b"" when not captured
    offset: int  # file offset of the type byte
    size: int = 0  # serialized object size in bytes (len(payload) when captured)
    module_type: str | None = None  # 9-character module type name for module values (type 6/7)
    module_encver: int | None = None


@dataclass(frozen=True, slots=True)
class FunctionRecord:
    code: bytes = field(repr=False)
    library: str | None  # from the "#!<engine> name=<library>" first line
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ModuleAux:
    """Module data outside the keyspace (e.g. RediSearch index definitions), skipped structurally."""

    module_id: int
    module_type: str
    encver: int
    when: int  # 1: before the keys, 2: after them
    raw: bytes = field(repr=False)  # the module's opcode sequence, EOF marker included
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """Redis 7.4+ cluster-mode size hints for one slot (opcode 244)."""

    slot: int
    size: int
    expires_size: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SlotImport:
    """Valkey 9+ atomic slot migration in progress when the file was written (opcode 243)."""

    job_name: bytes
    ranges: tuple[tuple[int, int], ...]
    offset: int = 0


@dataclass(frozen=True, slots=True)
class End:
    """EOF marker. checksum_ok is None when the file has no checksum (RDB < 5) or it was disabled (0)."""

    checksum: int | None
    checksum_ok: bool | None
    computed: int | None
    offset: int = 0


Record = AuxField | SelectDb | ResizeDb | KeyRecord | FunctionRecord | ModuleAux | SlotInfo | SlotImport | End


def function_library_name(code: bytes) -> str | None:
    """The library name of a function library's source: `#!lua name=mylib` -> "mylib"."""
    first = code.split(b"\n", 1)[0]
    if not first.startswith(b"#!"):
        return None
    for word in first[2:].split()[1:]:
        if word.startswith(b"name="):
            return word[5:].decode("utf-8", "replace")
    return None
