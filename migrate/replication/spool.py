"""Where the link's reader thread puts what it receives, and where the caller takes it from.

Three sinks, written by one thread (the link's reader) and read by another (the caller):
- `MemoryQueue`: a bounded in-memory queue of byte chunks. When it is full the reader stops reading the socket, so the
  primary buffers for us (its output buffer for replicas is limited: `client-output-buffer-limit replica`).
- `DiskSpool`: segment files in a folder; memory stays bounded by one read chunk whatever the backlog. A segment is
  deleted as soon as the caller has read past it. An optional byte limit makes the reader pause as `MemoryQueue` does.
- `FileSink`: the snapshot written to one file at socket speed; the caller waits for it to be complete.

The two queues share one reading protocol: `get(size, timeout)` returns bytes, `b""` on timeout, and raises the
reader's error once everything received before the error has been taken (so nothing received is ever lost).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from migrate.errors import MigrateError


class Closed(Exception):
    """The queue ended without an error (the link was closed by its owner)."""


class Sink(Protocol):
    def put(self, data: bytes) -> None: ...
    def has_room(self) -> bool: ...
    def finish(self, error: MigrateError | None = None) -> None: ...


class ChunkQueue(Sink, Protocol):
    def get(self, size: int, timeout: float | None) -> bytes: ...
    @property
    def pending(self) -> int: ...
    def discard(self) -> None: ...


class _Ending:
    """End-of-data state shared by the queues: finished, and with which error."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.finished = False
        self.error: MigrateError | None = None

    def finish(self, error: MigrateError | None = None) -> None:
        with self.cond:
            if not self.finished:
                self.finished, self.error = True, error
            self.cond.notify_all()

    def raise_end(self) -> None:
        if self.error is not None:
            raise self.error
        raise Closed()


class MemoryQueue(_Ending):
    """Bounded queue of chunks: at most `limit` bytes plus one chunk (the reader checks room before each read)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def put(self, data: bytes) -> None:
        with self.cond:
            self._chunks.append(data)
            self._size += len(data)
            self.cond.notify_all()

    def has_room(self) -> bool:
        return self._size < self.limit

    @property
    def pending(self) -> int:
        return self._size

    def get(self, size: int, timeout: float | None) -> bytes:
        with self.cond:
            if not self._chunks and not self.finished:
                self.cond.wait(timeout)
            if not self._chunks:
                if self.finished:
                    self.raise_end()
                return b""
            chunk = self._chunks.popleft()
            if len(chunk) > size:
                chunk, rest = chunk[:size], chunk[size:]
                self._chunks.appendleft(rest)
            self._size -= len(chunk)
            return chunk

    def discard(self) -> None:
        with self.cond:
            self._chunks.clear()
            self._size = 0


@dataclass
class _Segment:
    path: Path
    start: int  # stream position of its first byte
    end: int  # position after its last byte written so far
    sealed: bool = False  # no more bytes will be appended


class DiskSpool(_Ending):
    """Append-only segment files; the reader appends, the caller reads in order, read segments are deleted.

    Positions are byte counts since the spool began. Files are named `stream-<sequence>.seg` in `folder`; `folder`
    itself belongs to the caller and is never removed.
    """

    def __init__(self, folder: Path, segment_bytes: int = 64 << 20, max_bytes: int | None = None) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self._segments: deque[_Segment] = deque()
        self._write_fd: int | None = None
        self._read_fd: int | None = None
        self._read_segment: _Segment | None = None
        self._written = 0
        self._read = 0
        self._sequence = 0
        self.segments_created = 0
        self.segments_deleted = 0

    # -- writer (the link's reader thread) -----------------------------------------------------------------------------

    def put(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            segment = self._writable()
            take = min(len(view), self.segment_bytes - (segment.end - segment.start))
            assert self._write_fd is not None
            written = os.write(self._write_fd, view[:take])
            view = view[written:]
            with self.cond:
                segment.end += written
                self._written += written
                self.cond.notify_all()

    def _writable(self) -> _Segment:
        current = self._segments[-1] if self._segments else None
        if current is not None and not current.sealed and current.end - current.start < self.segment_bytes:
            return current
        with self.cond:
            if current is not None:
                current.sealed = True
            path = self.folder / f"stream-{self._sequence:08d}.seg"
            self._sequence += 1
            if self._write_fd is not None:
                os.close(self._write_fd)
            self._write_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            segment = _Segment(path, self._written, self._written)
            self._segments.append(segment)
            self.segments_created += 1
            self.cond.notify_all()
            return segment

    def has_room(self) -> bool:
        return self.max_bytes is None or self._written - self._read < self.max_bytes

    def finish(self, error: MigrateError | None = None) -> None:
        with self.cond:
            for segment in self._segments:
                segment.sealed = True
        super().finish(error)

    # -- reader (the caller) -------------------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._written - self._read

    @property
    def files(self) -> int:
        return len(self._segments)

    def get(self, size: int, timeout: float | None) -> bytes:
        with self.cond:
            waited = False
            while True:
                while self._segments and self._segments[0].sealed and self._segments[0].end == self._read:
                    self._drop_first()
                if self._read < self._written:
                    break
                if self.finished:
                    self.raise_end()
                if waited:
                    return b""
                self.cond.wait(timeout)
                waited = True
            segment = self._segments[0]  # holds unread bytes: a segment is sealed before the next one is created
            available = min(size, segment.end - self._read)
        data = self._pread(segment, available)
        with self.cond:
            self._read += len(data)
            if segment.sealed and self._read == segment.end:
                self._drop_first()
        return data

    def _pread(self, segment: _Segment, size: int) -> bytes:
        if self._read_segment is not segment:
            if self._read_fd is not None:
                os.close(self._read_fd)
            self._read_fd = os.open(segment.path, os.O_RDONLY)
            self._read_segment = segment
        assert self._read_fd is not None
        return os.pread(self._read_fd, size, self._read - segment.start)

    def _drop_first(self) -> None:
        segment = self._segments.popleft()
        if self._read_segment is segment and self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd, self._read_segment = None, None
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        self.segments_deleted += 1

    def discard(self) -> None:
        """Delete every segment file (the link is closed: nothing will be read any more)."""
        with self.cond:
            for fd in (self._write_fd, self._read_fd):
                if fd is not None:
                    os.close(fd)
            self._write_fd = self._read_fd = None
            self._read_segment = None
            while self._segments:
                with contextlib.suppress(FileNotFoundError):
                    self._segments.popleft().path.unlink()


class FileSink(_Ending):
    """The snapshot written to `path` as it arrives (socket speed); `wait()` returns once it is complete."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.size = 0

    def put(self, data: bytes) -> None:
        view = memoryview(data)
        assert self._fd is not None
        while view:
            view = view[os.write(self._fd, view):]
        self.size += len(data)

    def has_room(self) -> bool:
        return True

    def finish(self, error: MigrateError | None = None) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        super().finish(error)

    def wait(self, timeout: float | None) -> bool:
        """True once the file is complete; raises the link's error if it ended before that."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while not self.finished:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.cond.wait(left)
        if self.error is not None:
            raise self.error
        return True
