"""A pass over a whole RDB file at reader speed, before anything is destroyed on a target: is the file complete and
intact (EOF reached, checksum right), and which of its keys can the target not hold at all?

`migrate run --strategy reload` flushes the target only after this pass found the file whole and, under
`--on-incompatible fail`, found no key the run would have to fail on: a doomed reload never empties the target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from migrate.facts.capabilities import Capabilities
from migrate.facts.types import MODULE_TYPES, STREAM_TYPE_BYTES, logical_type
from migrate.rdb.constants import module_type_name
from migrate.rdb.decode import decode_object, stream_inconsistency
from migrate.rdb.dump import Action, decide
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.reader import RdbReader, Source
from migrate.rdb.records import End, ModuleAux
from migrate.rdb.rewrite import rewrite_losses

LISTED: Final = 100  # keys named in full; the others are counted

Wanted = Callable[[int, bytes, str], bool]  # (db, key, logical type) in the selection


@dataclass(frozen=True)
class Precheck:
    keys: int  # key records in the file (in the selection)
    incompatible: tuple[tuple[int, bytes, str], ...]  # (db, key, why) of the first LISTED keys the target cannot hold
    incompatible_total: int
    module_aux: tuple[str, ...]  # module data outside keys (e.g. search index definitions): never loaded
    rdb_version: int
    end_offset: int = 0  # bytes read: where the RDB ends (an AOF's commands follow its RDB preamble there)


def precheck(source: Source, target: Capabilities, *, lossy: bool, wanted: Wanted | None = None,
             module_types: frozenset[str] = frozenset()) -> Precheck:
    """Read every record; RdbFormatError for a truncated or corrupt file or a wrong checksum.

    A key is incompatible when no route brings it onto `target`: a type the target reads under no form, a module value
    (unless its type is in `module_types`), or, unless `lossy`, a value that can only be written with losses
    (hash field TTLs on a target without them). Values refused for their content are rebuilt at load time; the one
    refusal known in advance is judged here: a target that checks stream counters (facts.types.STREAM_COUNTS_CHECKED)
    refuses a stream whose counters disagree with its entries, and its rebuild may lose what commands cannot set.
    """
    decisions: dict[tuple[int, int], str | None] = {}
    listed: list[tuple[int, bytes, str]] = []
    keys = total = 0
    module_aux: set[str] = set()
    end: End | None = None
    streams = STREAM_TYPE_BYTES if target.stream_counts_checked else frozenset()
    with RdbReader(source, capture_payload=False, capture_types=streams) as reader:
        version = reader.rdb_version
        for item in reader.scan():
            if type(item) is tuple:
                _, db, key, type_byte, _, _, _, body, _, _, module_id = item
                if wanted is not None and not wanted(db, key, _logical(type_byte, version)):
                    continue
                keys += 1
                why = _why(type_byte, version, module_id, target, lossy, module_types, decisions)
                if why is None and type_byte in streams:
                    why = _refused_stream(type_byte, body, version, target, lossy)
                if why is not None:
                    total += 1
                    if len(listed) < LISTED:
                        listed.append((db, key, why))
            elif isinstance(item, ModuleAux):
                module_aux.add(item.module_type)
            elif isinstance(item, End):
                end = item
    if end is None:
        raise RdbFormatError("the file ends before its EOF record: it is truncated", reader.bytes_read)
    if end.checksum_ok is False:
        raise RdbFormatError(f"checksum mismatch (stored {end.checksum:#018x}, computed {end.computed:#018x}): the "
                             "file is corrupt", end.offset)
    return Precheck(keys, tuple(listed), total, tuple(sorted(module_aux)), version, reader.bytes_read)


def _why(type_byte: int, version: int, module_id: int | None, target: Capabilities, lossy: bool,
         module_types: frozenset[str], decisions: dict[tuple[int, int], str | None]) -> str | None:
    if type_byte in MODULE_TYPES:
        name = module_type_name(module_id) if module_id is not None else "unknown"
        return None if name in module_types else f"module value of type {name!r}: the target has no such module"
    signature = (type_byte, version)
    if signature not in decisions:
        action, reason, losses = decide(target, type_byte, version)
        decisions[signature] = (reason if action is Action.UNSUPPORTED else
                                f"{target.label} cannot keep its {', '.join(losses)}" if losses and not lossy else
                                None)
    return decisions[signature]


def _refused_stream(type_byte: int, body: bytes, version: int, target: Capabilities, lossy: bool) -> str | None:
    """A stream the target will refuse as a payload: rebuilt with commands, does it lose anything?"""
    reason = stream_inconsistency(type_byte, body, version)
    if reason is None:
        return None
    try:
        value = decode_object(type_byte, body, rdb_version=version)
    except RdbFormatError as exc:
        return f"{target.label} refuses the stream ({reason}) and it cannot be decoded: {exc.message}"
    losses = rewrite_losses(value, target, keep_field_ttls=target.hash_field_ttl)
    if losses and not lossy:
        return f"{target.label} refuses the stream ({reason}); rebuilt with commands it would lose {', '.join(losses)}"
    return None


def _logical(type_byte: int, version: int) -> str:
    try:
        return logical_type(type_byte, version)
    except ValueError:
        return "unknown"
