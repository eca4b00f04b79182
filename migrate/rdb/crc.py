"""CRC64 as Redis and Valkey compute it (src/crc64.c): Jones polynomial 0xad93d23594c935a9, reflected, init 0,
no final xor. Check value of b"123456789": 0xe9c6d914c4b8d9ca.

anycrc computes it in C (100 MB in ~0.013 s measured here); a pure-Python table loop runs at a few MB/s, too slow
for a 30 MB value or a multi-GB RDB file. The CRC is incremental: `crc64(b, crc64(a)) == crc64(a + b)`.
"""

from __future__ import annotations

from typing import Final

import anycrc

_MODEL: Final = anycrc.Model("CRC64-REDIS")
CHECK_VALUE: Final = 0xE9C6D914C4B8D9CA  # crc64(b"123456789")


def crc64(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC64 of `data`, continuing from `crc` (the CRC of everything before it; 0 to start)."""
    if not data:
        return crc
    return int(_MODEL.calc(data, crc))


class Crc64:
    """Running CRC64 over a stream of chunks (an RDB file read in pieces)."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def update(self, data: bytes | bytearray | memoryview) -> Crc64:
        self.value = crc64(data, self.value)
        return self

    def digest(self) -> bytes:
        """The CRC as the 8 little-endian bytes that end a DUMP payload or an RDB file."""
        return self.value.to_bytes(8, "little")
