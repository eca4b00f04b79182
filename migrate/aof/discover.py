"""What an AOF input holds: the files a server would load from PATH, in load order, each with its format.

PATH may be (checked in this order):
- a manifest file (`*.manifest`): the multi-part layout of Redis 7.0+ and Valkey, files beside it;
- a directory holding exactly one `*.manifest` (the server's `appenddirname`), or a data directory whose
  `appendonlydir/` holds one;
- a single AOF file, as Redis 6 and older write it (`appendonly.aof`), with or without an RDB preamble;
- a directory without a manifest holding exactly one `*.aof` file (a Redis 6 data directory).

A file's format is decided by its first bytes, as the server does (loadSingleAppendOnlyFile in src/aof.c compares the
first 5 bytes with "REDIS"; Valkey 9 writes base files with the `VALKEY080` magic and loads them, measured): an RDB
magic means an RDB part (a base file, or an RDB preamble) followed by commands; anything else is read as commands.
Empty files are loaded as nothing, as the server does (AOF_EMPTY).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from migrate.aof.errors import AofFormatError
from migrate.aof.manifest import MANIFEST_SUFFIX, Manifest, ManifestEntry, read_manifest

DEFAULT_DIRNAME: Final = "appendonlydir"  # the default appenddirname of Redis 7.0+ and Valkey
_RDB_MAGICS: Final = (b"REDIS", b"VALKEY")


@dataclass(frozen=True, slots=True)
class AofFileInfo:
    name: str
    path: Path
    kind: str  # "base", "incr" (multi-part) or "single" (one file, Redis 6 and older)
    format: str  # "rdb" (an RDB part, then commands), "aof" (commands only) or "empty"
    size: int
    seq: int | None = None  # the manifest's seq (None for a single file)
    rdb_magic: str | None = None  # "REDIS" / "VALKEY" when format == "rdb"
    rdb_version: int | None = None  # from the magic, when format == "rdb"


@dataclass(frozen=True, slots=True)
class AofInput:
    """The files a server would load, in load order; `history` lists what the manifest names but a server ignores."""

    path: Path  # what the user gave
    layout: str  # "multi-part" or "single-file"
    files: tuple[AofFileInfo, ...]
    manifest: Path | None = None
    history: tuple[ManifestEntry, ...] = ()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def open_aof_input(path: str | os.PathLike[str]) -> AofInput:
    """Discover what PATH holds; AofFormatError (exit code 6) when it is not a loadable AOF input."""
    given = Path(path)
    if given.is_dir():
        return _from_directory(given)
    if not given.exists():
        raise AofFormatError(f"AOF input not found: {given}", hint="give the AOF directory, its manifest, or the "
                             "appendonly.aof file")
    if given.name.endswith(MANIFEST_SUFFIX):
        return _from_manifest(given, read_manifest(given))
    return AofInput(given, "single-file", (describe_file(given, "single"),))


def _from_directory(directory: Path) -> AofInput:
    manifests = sorted(p for p in directory.glob(f"*{MANIFEST_SUFFIX}") if p.is_file())
    if not manifests and (directory / DEFAULT_DIRNAME).is_dir():
        manifests = sorted(p for p in (directory / DEFAULT_DIRNAME).glob(f"*{MANIFEST_SUFFIX}") if p.is_file())
    if len(manifests) > 1:
        names = ", ".join(p.name for p in manifests)
        raise AofFormatError(f"more than one AOF manifest in {manifests[0].parent}: {names}",
                             hint="give the path of the manifest to load")
    if manifests:
        return _from_manifest(directory, read_manifest(manifests[0]))
    singles = sorted(p for p in directory.glob("*.aof") if p.is_file())
    if len(singles) == 1:
        return AofInput(directory, "single-file", (describe_file(singles[0], "single"),))
    if singles:
        raise AofFormatError(f"no AOF manifest and several *.aof files in {directory}",
                             hint="give the path of the AOF file to load")
    raise AofFormatError(f"no AOF manifest (*.manifest) and no *.aof file in {directory}",
                         hint="give the server's appenddirname folder (Redis 7+ / Valkey) or its appendonly.aof")


def _from_manifest(given: Path, manifest: Manifest) -> AofInput:
    folder = manifest.path.parent
    files = []
    for entry in manifest.loaded:
        path = folder / entry.name
        if not path.is_file():
            raise AofFormatError(f"the AOF manifest {manifest.path} names {entry.name} (line {entry.line}), "
                                 "which does not exist", hint="restore the missing file, or give a complete "
                                 "AOF directory (a server refuses to start without it)")
        files.append(describe_file(path, entry.kind, entry.seq))
    return AofInput(given, "multi-part", tuple(files), manifest.path, manifest.history)


def describe_file(path: Path, kind: str, seq: int | None = None) -> AofFileInfo:
    try:
        with path.open("rb") as fh:
            head = fh.read(9)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise AofFormatError(f"cannot read AOF file {path}: {exc.strerror}", hint="check the path and its "
                             "permissions") from None
    magic, version = rdb_magic(head)
    if size == 0:
        return AofFileInfo(path.name, path, kind, "empty", 0, seq)
    return AofFileInfo(path.name, path, kind, "rdb" if magic else "aof", size, seq, magic, version)


def rdb_magic(head: bytes) -> tuple[str | None, int | None]:
    """("REDIS"/"VALKEY", version) when the bytes start like an RDB file; the version is None when unreadable."""
    for magic in _RDB_MAGICS:
        if head.startswith(magic):
            digits = head[len(magic):9]
            return magic.decode(), int(digits) if digits.isdigit() else None
    return None, None
