"""Wire facts of the replication protocol shared by both sides, with their provenance.

Sources read (2026-12): redis/redis `src/replication.c` and `src/networking.c` at tags 6.0.16 and 7.0.15 and at the
development head of 2024-10 (the 7.4/8.0 line); valkey-io/valkey the same files at tag 8.0.1 and at the development head
of 2024-10 (the 8.1 line). Behaviour of Redis 8.0.x, Valkey 8.1.1 and 9.1.2 binaries was measured by the tests.

- Offsets: a primary's `master_repl_offset` counts every byte it feeds to replicas (commands, the SELECTs and PINGs
  it inserts, `REPLCONF GETACK *`). `+FULLRESYNC <replid> <offset>` names the offset the RDB corresponds to; the first
  byte after the RDB is byte offset+1. A replica's offset (`reploff`) is that of the last byte of the last command it
  has processed (networking.c `commandProcessed`: updated after the command ran, and not inside MULTI). It asks to
  continue with `PSYNC <replid> <reploff + 1>` (replication.c `slaveTryPartialResynchronization`: `reploff+1`); the
  primary continues when that byte is in its backlog (`masterTryPartialResynchronization`: backlog start <= offset
  <= backlog start + length).
- `REPLCONF ACK <reploff>` (Redis 7.0+ and Valkey append `FACK <fsynced offset>` when AOF is on) is sent once a second
  (`replicationCron`) and in answer to `REPLCONF GETACK *`; the answer to a GETACK carries the offset before the
  GETACK, which is counted only once it has been processed.
- The primary pings replicas with `PING` in the stream every `repl-ping-replica-period` seconds and sends bare `\\n`
  (not counted) to replicas still waiting for their RDB; it drops an online replica whose last ACK is older than
  `repl-timeout`, and a diskless-sync replica that has not read for `repl-timeout` (`Disconnecting timedout replica`).
"""

from __future__ import annotations

import secrets
from typing import Final

from migrate.wire import pack
from migrate.wire import resp_size as command_size  # a primary writes every command in canonical RESP: its offset share

ID_LEN: Final = 40  # replication ids and EOF marks: CONFIG_RUN_ID_SIZE
GETACK: Final = pack((b"REPLCONF", b"GETACK", b"*"))
PING: Final = pack((b"PING",))

__all__ = ["GETACK", "ID_LEN", "PING", "RequestParser", "ack_command", "command_size", "pack", "random_id"]


def random_id() -> str:
    """A 40-character hex id, the form servers use for replication ids and EOF marks."""
    return secrets.token_hex(ID_LEN // 2)


def ack_command(offset: int) -> bytes:
    return pack((b"REPLCONF", b"ACK", str(offset).encode()))


class RequestParser:
    """Commands a replica sends its primary: RESP arrays of bulk strings, or inline lines (a bare newline is a
    replica's keepalive while it loads the RDB, replication.c `replicationSendNewlineToMaster`)."""

    def __init__(self, max_bulk: int = 1 << 20) -> None:
        self._buf = bytearray()
        self._max_bulk = max_bulk

    def feed(self, data: bytes) -> list[list[bytes]]:
        self._buf += data
        commands: list[list[bytes]] = []
        while True:
            command = self._next()
            if command is None:
                return commands
            if command:
                commands.append(command)

    def _next(self) -> list[bytes] | None:
        buf = self._buf
        if not buf:
            return None
        end = buf.find(b"\n")
        if end == -1:
            if len(buf) > self._max_bulk:
                raise ValueError("request line too long")
            return None
        if buf[0:1] != b"*":
            line = bytes(buf[:end]).strip()
            del buf[:end + 1]
            return line.split()
        count = int(buf[1:end])
        pos, args = end + 1, []
        for _ in range(count):
            eol = buf.find(b"\n", pos)
            if eol == -1:
                return None
            if buf[pos:pos + 1] != b"$":
                raise ValueError("expected a bulk string")
            length = int(buf[pos + 1:eol])
            if length > self._max_bulk:
                raise ValueError("bulk string too long")
            start = eol + 1
            if len(buf) < start + length + 2:
                return None
            args.append(bytes(buf[start:start + length]))
            pos = start + length + 2
        del buf[:pos]
        return args
