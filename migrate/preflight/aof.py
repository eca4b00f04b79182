"""An AOF directory: the multi-part manifest (Redis 7.0+ / Valkey), the base file's format and RDB version, and
which commands the command files replay (a target that lacks one cannot load the directory)."""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path

import hiredis

from migrate.errors import BadInputError
from migrate.preflight.profile import AofFacts, AofFile

KINDS = {"b": "base", "h": "history", "i": "incr"}
CHUNK = 1 << 20


def read_aof_dir(directory: str) -> AofFacts:
    root = Path(directory)
    if not root.is_dir():
        raise BadInputError(f"AOF directory not found: {directory}", "give the server's appenddirname folder")
    manifests = sorted(root.glob("*.manifest"))
    try:
        files = _from_manifest(root, manifests[0]) if manifests else _single_files(root)
        commands = _commands(root, files)
    except (OSError, ValueError, hiredis.ProtocolError) as exc:
        return AofFacts(str(root), manifests[0].name if manifests else None, (), {}, f"unreadable: {exc}")
    return AofFacts(str(root), manifests[0].name if manifests else None, tuple(files), dict(commands))


def _from_manifest(root: Path, manifest: Path) -> list[AofFile]:
    out = []
    for line in manifest.read_text().splitlines():
        fields = shlex.split(line)
        if not fields:
            continue
        attrs = dict(zip(fields[::2], fields[1::2], strict=False))
        if "file" not in attrs:
            raise ValueError(f"manifest line without a file name: {line!r}")
        out.append(_describe(root / attrs["file"], KINDS.get(attrs.get("type", "i"), "incr")))
    return out


def _single_files(root: Path) -> list[AofFile]:
    """Before Redis 7.0: one appendonly.aof, possibly starting with an RDB preamble."""
    return [_describe(path, "incr") for path in sorted(root.glob("*.aof"))]


def _describe(path: Path, kind: str) -> AofFile:
    if not path.exists():
        return AofFile(path.name, kind, None)
    with path.open("rb") as fh:
        head = fh.read(9)
    version = _rdb_version(head)
    return AofFile(path.name, kind, path.stat().st_size, "rdb" if version is not None else "aof", version)


def _rdb_version(head: bytes) -> int | None:
    for magic in (b"REDIS", b"VALKEY"):
        if head.startswith(magic) and head[len(magic):].isdigit():
            return int(head[len(magic):])
    return None


def _commands(root: Path, files: list[AofFile]) -> Counter[str]:
    """Command names replayed by the AOF-format files (RDB-format bases hold data, not commands)."""
    names: Counter[str] = Counter()
    for f in files:
        if f.format == "aof" and f.size and f.kind != "history":
            _count_commands(root / f.name, names)
    return names


def _count_commands(path: Path, names: Counter[str]) -> None:
    reader = hiredis.Reader()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            reader.feed(chunk)
            while (reply := reader.gets()) is not False:
                if isinstance(reply, list) and reply:
                    names[bytes(reply[0]).decode("utf-8", "replace").lower()] += 1
