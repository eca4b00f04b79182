"""Torn and bad AOF inputs: the reader does what the server does with each (fixtures/aof/bad/, built by
scripts/make-aof-fixtures), and every input a server refuses is one clear AofFormatError with exit code 6."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fixtures.aof_state import canonical_state, same_state
from migrate.aof import AofCommand, AofFormatError, AofReader, RdbPartEnd, open_aof_input, summarize_aof
from migrate.errors import BadInputError, ExitCode
from tests.aof_support import BAD, copy_for_server, replay, server_on_aof, server_refuses, truncation_offsets
from tests.conftest import ServerFactory


def read_all(path: Path) -> AofReader:
    reader = AofReader(path)
    for _ in reader:
        pass
    return reader


# -- torn tails: loaded up to the last applied command, as the server does -----------------------------------------

TORN = [  # (input, writer, reason, commands dropped)
    ("truncated-last", "redis-7.0", "incomplete-command", 0),
    ("truncated-single", "redis-6.0", "incomplete-command", 0),
    ("open-transaction", "redis-8.0.6", "open-transaction", 3),  # MULTI, SET, INCR
]


@pytest.mark.parametrize(("name", "writer", "reason", "dropped"), TORN)
def test_torn_tail_is_reported(name: str, writer: str, reason: str, dropped: int) -> None:
    reader = read_all(BAD / name)
    truncation = reader.truncation
    assert truncation is not None
    last = reader.input.files[-1]
    assert (truncation.file, truncation.reason, truncation.dropped_commands) == (last.name, reason, dropped)
    assert truncation.size == last.size
    assert 0 < truncation.dropped_bytes < 200
    assert summarize_aof(BAD / name).truncation == truncation


@pytest.mark.parametrize(("name", "writer", "reason", "dropped"), TORN)
def test_torn_tail_loads_like_the_server(name: str, writer: str, reason: str, dropped: int,
                                         servers: ServerFactory, tmp_path: Path) -> None:
    reader = AofReader(BAD / name)
    target = servers.get(writer)
    assert replay(reader, target.client()) == []
    assert reader.truncation is not None
    ground = server_on_aof(writer, BAD / name, tmp_path)
    try:
        truth = canonical_state(ground.client())
        tolerance = 0 if truth["expiry_exact"] else 5_000
        assert same_state(canonical_state(target.client()), truth, tolerance) == []
        assert truth["dbs"]  # the server did load the input
        log = (ground.dir / "server.log").read_text(errors="replace")
    finally:
        ground.stop()
    assert reader.truncation.loaded_up_to in truncation_offsets(log)  # where the server cut the file


def test_torn_right_after_the_rdb_part(tmp_path: Path) -> None:
    """No command after the preamble loads: the reader keeps the RDB part; the server loads it too, logs offset 0."""
    source = BAD.parent / "redis-6.0-preamble" / "appendonly.aof"
    rdb_end = next(e.end_offset for e in AofReader(source) if isinstance(e, RdbPartEnd))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "appendonly.aof").write_bytes(source.read_bytes()[:rdb_end + 5])
    reader = read_all(tmp_path / "in")
    assert reader.truncation is not None and reader.truncation.loaded_up_to == rdb_end
    refused, log = server_refuses("redis-6.0", tmp_path / "in", tmp_path / "server")
    assert not refused and truncation_offsets(log) == [0]


def test_open_transaction_commands_are_never_yielded() -> None:
    names = [e.argv[1] for e in AofReader(BAD / "open-transaction").commands_only() if len(e.argv) > 1]
    assert b"never:seen" not in names


# -- inputs a server refuses: one error, exit code 6 ----------------------------------------------------------------

REFUSED = [  # (input, words the message must contain)
    ("truncated-not-last", "not the last file"),
    ("missing-file", "does not exist"),
    ("no-manifest", "no AOF manifest"),
    ("bad-manifest", "invalid AOF manifest"),
    ("corrupt-middle", "corrupt AOF command"),
    ("binary.aof", "not an AOF file"),
]


@pytest.mark.parametrize(("name", "words"), REFUSED)
def test_refused_input_is_one_clear_error(name: str, words: str) -> None:
    with pytest.raises(AofFormatError) as caught:
        read_all(BAD / name)
    error = caught.value
    assert isinstance(error, BadInputError)
    assert error.exit_code == ExitCode.BAD_INPUT == 6
    assert words in error.message
    assert "\n" not in error.one_line() and error.hint
    with pytest.raises(AofFormatError):
        summarize_aof(BAD / name)


def test_corrupt_command_names_file_and_offset() -> None:
    with pytest.raises(AofFormatError) as caught:
        read_all(BAD / "corrupt-middle")
    data = (BAD / "corrupt-middle" / "appendonly.aof").read_bytes()
    assert caught.value.file == "appendonly.aof"
    assert caught.value.offset == data.index(b"%")


@pytest.mark.parametrize("name", ["truncated-not-last", "missing-file", "bad-manifest", "corrupt-middle"])
def test_server_refuses_it_too(name: str, tmp_path: Path) -> None:
    """The ground truth for the errors above: the writer's own server does not start on the input."""
    writer = "redis-6.0" if name == "corrupt-middle" else "redis-7.0"
    refused, log = server_refuses(writer, BAD / name, tmp_path)
    assert refused, log[-2000:]


def test_a_refused_torn_base_is_cut_anyway(tmp_path: Path) -> None:
    """Measured fact behind the reader's refusal: the server cuts a torn non-last file before it gives up, so a
    second start loads the cut file without complaint (the data after the tear is lost for good)."""
    refused, log = server_refuses("redis-7.0", BAD / "truncated-not-last", tmp_path)
    assert refused and "the truncated file is not the last file" in log
    base = tmp_path / "data" / "appendonlydir" / "appendonly.aof.2.base.aof"
    assert base.stat().st_size == truncation_offsets(log)[0] < 2000


def test_missing_input_path(tmp_path: Path) -> None:
    with pytest.raises(AofFormatError, match="not found"):
        open_aof_input(tmp_path / "nowhere")


def test_rdb_part_corruption_is_an_error(tmp_path: Path) -> None:
    source = BAD.parent / "redis-6.0-preamble" / "appendonly.aof"
    data = bytearray(source.read_bytes())
    data[200] ^= 0xFF  # inside the RDB preamble: its checksum no longer matches, or a record breaks
    (tmp_path / "appendonly.aof").write_bytes(bytes(data))
    with pytest.raises(AofFormatError, match="RDB part"):
        read_all(tmp_path / "appendonly.aof")


def test_empty_files_load_nothing(tmp_path: Path) -> None:
    (tmp_path / "appendonly.aof").write_bytes(b"")
    reader = read_all(tmp_path / "appendonly.aof")
    assert reader.commands == 0 and reader.truncation is None
    shutil.copytree(BAD.parent / "redis-7.0-rdb-base", tmp_path / "dir")
    for f in (tmp_path / "dir").glob("*.incr.aof"):
        f.write_bytes(b"")
    reader = read_all(tmp_path / "dir")
    assert reader.commands == 0 and reader.input.files[-1].format == "empty"


def test_data_directory_finds_appendonlydir(tmp_path: Path) -> None:
    copy_for_server(BAD.parent / "redis-7.0-rdb-base", tmp_path)
    assert open_aof_input(tmp_path).manifest == tmp_path / "appendonlydir" / "appendonly.aof.manifest"


def test_truncation_in_an_annotation_only_file_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "appendonly.aof"
    path.write_bytes(b"#TS:1700000000\r\n*1\r\n$4\r\nPING\r\n#TS:170")
    reader = read_all(path)
    assert reader.truncation is None and reader.commands == 1


def test_select_tracking_and_per_file_reset(tmp_path: Path) -> None:
    path = tmp_path / "appendonly.aof"
    path.write_bytes(b"*2\r\n$6\r\nSELECT\r\n$1\r\n5\r\n*2\r\n$3\r\nDEL\r\n$1\r\na\r\n"
                     b"*2\r\n$6\r\nSELECT\r\n$2\r\nxx\r\n*2\r\n$3\r\nDEL\r\n$1\r\nb\r\n")
    commands = [e for e in AofReader(path) if isinstance(e, AofCommand)]
    assert [(c.name, c.db) for c in commands] == [("select", 0), ("del", 5), ("select", 5), ("del", 5)]


@pytest.mark.parametrize(("writer", "fixture", "with_incr"), [
    ("redis-6.0", "redis-6.0-preamble", False), ("redis-7.0", "redis-7.0-rdb-base", True),
    ("redis-8.0.6", "redis-8.0.6-rdb-base", True), ("valkey-8.1", "valkey-8.1-rdb-base", True),
    ("valkey-9.1", "valkey-9.1-rdb-base", True), ("valkey-9.1", "valkey-9.1-rdb-base", False),
])
def test_a_torn_rdb_part_is_refused_by_reader_and_server(writer: str, fixture: str, with_incr: bool,
                                                          tmp_path: Path) -> None:
    """aof-load-truncated covers commands only: an RDB part cut short is fatal, last file or not (measured)."""
    source = tmp_path / "in"
    shutil.copytree(BAD.parent / fixture, source)
    rdb = next(f for f in AofReader(source).input.files if f.format == "rdb")
    rdb.path.write_bytes(rdb.path.read_bytes()[:3000])
    manifest = next(source.glob("*.manifest"), None)
    if manifest is not None and not with_incr:
        manifest.write_text(manifest.read_text().splitlines()[0] + "\n")
    with pytest.raises(AofFormatError, match="corrupt RDB part"):
        read_all(source)
    refused, log = server_refuses(writer, source, tmp_path / "server")
    assert refused and "RDB" in log


def test_every_file_starts_in_database_0(servers: ServerFactory, tmp_path: Path) -> None:
    """A new replay client per file (createAOFClient in loadSingleAppendOnlyFile): a SELECT does not carry over."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "appendonly.aof.manifest").write_text("file a.aof seq 1 type i\nfile b.aof seq 2 type i\n")
    (folder / "a.aof").write_bytes(b"*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n")
    (folder / "b.aof").write_bytes(b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n")
    commands = [(e.name, e.argv[1], e.db) for e in AofReader(folder).commands_only()]
    assert commands == [("select", b"1", 0), ("set", b"a", 1), ("set", b"b", 0)]
    ground = server_on_aof("redis-7.0", folder, tmp_path / "server")
    try:
        assert ground.client(0).keys() == [b"b"] and ground.client(1).keys() == [b"a"]
    finally:
        ground.stop()


def test_a_file_or_a_manifest_path_reads_like_its_directory() -> None:
    single = BAD.parent / "redis-6.0-preamble"
    assert list(AofReader(single / "appendonly.aof")) == list(AofReader(single))
    multi = BAD.parent / "redis-8.0.6-rdb-base"
    assert list(AofReader(multi / "appendonly.aof.manifest")) == list(AofReader(multi))
    assert open_aof_input(single).layout == "single-file" and open_aof_input(multi).layout == "multi-part"
