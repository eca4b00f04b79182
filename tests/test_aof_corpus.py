"""The AOF reader against the corpus of real files (fixtures/aof/, scripts/make-aof-fixtures).

For every fixture: the reader's events, replayed into a fresh server of the writer's version, give exactly the state
the writer held (fixtures/aof/<name>.state.json); and the server itself, started on a copy of the fixture, loads the
same state (the ground truth the reader is held to).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.aof_state import canonical_state, same_state
from migrate.aof import AofCommand, AofReader, FileStart, RdbPartEnd, summarize_aof
from migrate.rdb.records import KeyRecord
from tests.aof_support import CORPUS, FIXTURES, expected_state, replay, server_on_aof, tolerance, writer_of
from tests.conftest import ServerFactory

pytestmark = pytest.mark.parametrize("fixture", FIXTURES)


def test_corpus_is_complete(fixture: str) -> None:
    assert len(FIXTURES) >= 10
    assert (CORPUS / fixture).is_dir()


def test_reader_replay_gives_the_writers_state(fixture: str, servers: ServerFactory) -> None:
    state = expected_state(fixture)
    server = servers.get(writer_of(fixture))
    reader = AofReader(CORPUS / fixture)
    errors = replay(reader, server.client())
    assert errors == []
    assert reader.truncation is None
    assert same_state(canonical_state(server.client()), state, tolerance(state)) == []


def test_server_loads_the_same_state(fixture: str, servers: ServerFactory, tmp_path: Path) -> None:
    state = expected_state(fixture)
    server = server_on_aof(writer_of(fixture), CORPUS / fixture, tmp_path)
    try:
        assert same_state(canonical_state(server.client()), state, tolerance(state)) == []
    finally:
        server.stop()


def test_events_are_in_load_order(fixture: str) -> None:
    reader = AofReader(CORPUS / fixture)
    events = list(reader)
    starts = [e.file.name for e in events if isinstance(e, FileStart)]
    assert tuple(starts) == tuple(f.name for f in reader.input.files)
    commands = [e for e in events if isinstance(e, AofCommand)]
    assert [c.seq for c in commands] == list(range(1, len(commands) + 1))
    assert reader.commands == len(commands)
    for command in commands:  # every offset points at the command's own bytes
        with open(CORPUS / fixture / command.file, "rb") as fh:
            fh.seek(command.offset)
            assert fh.read(1) == b"*"
    rdb_ends = [e for e in events if isinstance(e, RdbPartEnd)]
    for end in rdb_ends:
        data = (CORPUS / fixture / end.file).read_bytes()
        assert data[end.end_offset - 9] == 0xFF  # the EOF opcode, then the 8-byte checksum
        assert end.end_offset == len(data) or data[end.end_offset:end.end_offset + 1] in (b"*", b"#")


def test_small_chunks_and_big_transaction_limit_give_the_same_events(fixture: str) -> None:
    default = list(AofReader(CORPUS / fixture))
    tiny = list(AofReader(CORPUS / fixture, chunk_size=7, max_transaction_bytes=1))
    assert tiny == default


def test_summary(fixture: str) -> None:
    summary = summarize_aof(CORPUS / fixture)
    reader = AofReader(CORPUS / fixture, capture_payload=False)
    events = list(reader)
    commands = [e for e in events if isinstance(e, AofCommand)]
    assert summary.commands == len(commands)
    assert sum(summary.by_command.values()) == len(commands)
    assert summary.by_command.get("multi", 0) == summary.transactions
    assert summary.transactions >= 2  # the fixture's MULTI/EXEC and its script
    assert set(summary.databases) == {c.db for c in commands}
    assert summary.keys_in_rdb == sum(isinstance(e, KeyRecord) for e in events)
    assert summary.truncation is None
    assert [f.name for f in summary.files] == [f.name for f in reader.input.files]
    for f in summary.files:
        assert (f.rdb is not None) == (f.format == "rdb")
