"""A live snapshot taken to local disk first, so that it is complete and checked before the target is flushed.

Streamed straight into the target, a snapshot that breaks half way (the source restarts, the network drops) leaves the
target flushed and half loaded. Spooled, it is read in full at socket speed (the source's output buffer for us never
fills), its checksum and its keys are checked, and only then is the target touched. `--no-spool` streams instead, for
sources whose snapshot does not fit on local disk; the plan says what that risks.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from migrate.errors import ConfigError, ConnectError, MigrateError
from migrate.logs import get_logger
from migrate.run.snapshot import ReplicationSnapshot
from migrate.server import Server

log = get_logger(__name__)
CHUNK: Final = 1 << 20


def spool_folder(folder: Path | None) -> Path:
    return folder if folder is not None else Path(tempfile.gettempdir())


def check_space(source: Server | list[Server], folder: Path) -> int:
    """Refuse when the folder has less free space than the sources' datasets together (an RDB is usually
    smaller)."""
    sources = source if isinstance(source, list) else [source]
    need = 0
    for node in sources:
        info = node.client.info("memory")
        need += int(info.get("used_memory_dataset", info.get("used_memory", 0)))
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise ConfigError(f"cannot use the spool folder {folder}: {exc.strerror or exc}",
                          "give --spool-dir a writable folder") from None
    if free < need:
        whose = "the source's dataset is" if len(sources) == 1 else f"the datasets of the {len(sources)} nodes are"
        raise ConfigError(f"the spool folder {folder} has {free:,} bytes free, {whose} {need:,} bytes",
                          "give --spool-dir a folder with room for the snapshots, or --no-spool to stream them")
    return need


@contextlib.contextmanager
def spooled_snapshots(sources: list[Server], folder: Path) -> Iterator[list[Path]]:
    """Every source's snapshot as a local file, all taken at once (each node writes its own: a cluster's primaries
    are on their own hosts), after one check that the folder has room for them all; every file is removed when the
    block ends. A snapshot that fails fails the whole, once the others have ended."""
    check_space(sources, folder)
    with contextlib.ExitStack() as stack:
        with ThreadPoolExecutor(max_workers=len(sources), thread_name_prefix="spool") as pool:
            # each thread enters its snapshot into the one stack (an append to a deque: atomic), so every file that
            # was written is removed at the end whatever happened to the others
            futures = [pool.submit(stack.enter_context, spooled_snapshot(node, folder)) for node in sources]
            cf.wait(futures)
        yield [future.result() for future in futures]


@contextlib.contextmanager
def spooled_snapshot(source: Server, folder: Path) -> Iterator[Path]:
    """The source's replication snapshot as a local file, removed when the block ends (whatever happens)."""
    try:
        fd, name = tempfile.mkstemp(prefix="migrate-snapshot-", suffix=".rdb", dir=folder)
    except OSError as exc:
        raise ConfigError(f"cannot write in the spool folder {folder}: {exc.strerror or exc}",
                          "give --spool-dir a writable folder") from None
    path = Path(name)
    try:
        _download(source, fd, path)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _download(source: Server, fd: int, path: Path) -> None:
    written = 0
    with os.fdopen(fd, "wb") as out:
        try:
            with ReplicationSnapshot(source.endpoint, source.settings) as snapshot:
                log.info("spooling the snapshot", file=str(path), diskless=snapshot.diskless, size=snapshot.size)
                while chunk := snapshot.read(CHUNK):
                    out.write(chunk)
                    written += len(chunk)
        except OSError as exc:  # our disk (full, gone): the source is fine
            raise ConfigError(f"cannot write the snapshot to {path}: {exc.strerror or exc}",
                              "give --spool-dir a folder with room for the snapshot") from None
        except MigrateError as exc:
            if written == 0:
                raise
            raise ConnectError(f"the source's snapshot stream broke after {written:,} bytes ({exc.message}); the "
                               "target was not touched", "run again once the source is reachable") from None
    log.info("snapshot spooled", bytes=written)
