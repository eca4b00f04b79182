"""Random corruption of real AOF bytes never raises anything but our BadInputError (or ends in a reported torn tail);
and a torn copy of every fixture loads in the reader exactly as in the writer's own server."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from hiredis import pack_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.aof_state import canonical_state, same_state
from migrate.aof import AofCommand, AofReader, summarize_aof
from migrate.aof.commands import FAST_CHUNK, RUN_BYTES, RUN_COMMANDS, CommandRun, CommandStream, RawCommand, Runs
from migrate.errors import BadInputError
from migrate.wire import PassPlan, resp_size
from tests.aof_support import CORPUS, FIXTURES, replay, server_on_aof, tolerance, truncation_offsets, writer_of
from tests.conftest import ServerFactory

SAMPLES = {
    "commands": (CORPUS / "redis-7.0-aof-base" / "appendonly.aof.2.incr.aof").read_bytes()[:3000],
    "preamble": (CORPUS / "redis-6.0-preamble" / "appendonly.aof").read_bytes(),
}

edits = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=6)


def mutate(data: bytes, changes: list[tuple[float, int]], cut: float | None, region: tuple[int, int]) -> bytes:
    out = bytearray(data)
    low, high = region
    for where, byte in changes:
        out[low + int(where * (high - low))] = byte
    if cut is not None:
        out = out[:low + int(cut * (len(out) - low))]
    return bytes(out)


def read_everything(data: bytes, **options: int) -> AofReader:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "appendonly.aof"
        path.write_bytes(data)
        reader = AofReader(path, **options)
        for event in reader:
            if isinstance(event, AofCommand):
                assert event.argv and all(isinstance(a, bytes) for a in event.argv)
        summarize_aof(path)
        return reader


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=st.sampled_from(sorted(SAMPLES)), changes=edits, cut=st.none() | st.floats(0, 1),
       chunk=st.sampled_from([3, 64, 1 << 20]), in_rdb=st.booleans())
def test_corruption_is_bad_input_or_a_torn_tail(sample: str, changes: list[tuple[float, int]], cut: float | None,
                                                chunk: int, in_rdb: bool) -> None:
    data = SAMPLES[sample]
    region = (0, len(data))
    if sample == "preamble" and not in_rdb:  # most edits in the command tail, where the RDB checksum cannot help
        region = (data.index(b"*2\r\n$6\r\nSELECT"), len(data))
    corrupt = mutate(data, changes, cut, region)
    try:
        reader = read_everything(corrupt, chunk_size=chunk, max_transaction_bytes=100)
    except BadInputError as exc:
        assert exc.exit_code == 6 and exc.message
        return
    if reader.truncation is not None:
        assert 0 <= reader.truncation.loaded_up_to <= len(corrupt)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(1, 2999))
def test_any_cut_of_a_command_file_is_clean_or_torn(cut: int) -> None:
    data = SAMPLES["commands"][:cut]
    reader = read_everything(data)
    loaded = reader.truncation.loaded_up_to if reader.truncation else len(data)
    complete = read_everything(data[:loaded])  # what the reader kept is itself a complete file
    assert complete.truncation is None and complete.commands == reader.commands


@pytest.mark.parametrize("fixture", FIXTURES)
def test_torn_copy_loads_like_the_server(fixture: str, servers: ServerFactory, tmp_path: Path) -> None:
    """The last file of every fixture cut 9 bytes short: reader replay == the writer's server on the same bytes."""
    torn = tmp_path / "torn"
    source = CORPUS / fixture
    torn.mkdir()
    files = sorted(p for p in source.iterdir())
    for path in files:
        (torn / path.name).write_bytes(path.read_bytes())
    last = AofReader(source).input.files[-1]
    (torn / last.name).write_bytes(last.path.read_bytes()[:-9])
    reader = AofReader(torn)
    target = servers.get(writer_of(fixture))
    assert replay(reader, target.client()) == []
    assert reader.truncation is not None and reader.truncation.file == last.name
    ground = server_on_aof(writer_of(fixture), torn, tmp_path / "server")
    try:
        truth = canonical_state(ground.client())
        log = (ground.dir / "server.log").read_text(errors="replace")
    finally:
        ground.stop()
    assert same_state(canonical_state(target.client()), truth, tolerance(truth)) == []
    assert reader.truncation.loaded_up_to in truncation_offsets(log)  # where the server cut the file


def _parse(path: Path, fast: bool, chunk: int, runs: str = "none") -> tuple[object, ...]:
    stream = CommandStream(path, "f", chunk_size=chunk, fast=fast)
    try:
        commands = list(stream) if runs == "none" else expand(stream.gathered(RUNS[runs]))
    except BadInputError as exc:
        return ("error", exc.message)
    return ("ok", commands, stream.truncated_at)


def _passes(name: bytes) -> PassPlan:
    return (True, -1, None)


def _passes_set(name: bytes) -> PassPlan:
    return (name.lower() == b"set", -1, None)


RUNS: dict[str, Runs] = {"all": (_passes, lambda: True), "some": (_passes_set, lambda: True)}


def expand(items: Iterable[RawCommand | CommandRun]) -> list[RawCommand]:
    """Runs back into (offset, end, argv) by the canonical sizes (each run's must end where the run says)."""
    out: list[RawCommand] = []
    for item in items:
        if not isinstance(item, CommandRun):
            out.append(item)
            continue
        assert item.commands
        pos = item.start
        for argv in item.commands:
            out.append((pos, pos + resp_size(argv), tuple(argv)))
            pos += resp_size(argv)
        assert pos == item.end
    return out


def test_runs_are_bounded_and_cross_chunks_exactly(tmp_path: Path) -> None:
    """Runs over many 64 KiB chunks: the same commands and offsets as the exact parser; at most RUN_COMMANDS
    commands and about RUN_BYTES bytes each; a command that does not pass ends a run; the file's last command is
    never in a run (nothing follows it to prove its end)."""
    path = tmp_path / "appendonly.aof"
    commands = [(b"SET", b"k%d" % i, b"v" * (10 if i < 2600 else 2000 + i % 7)) if i % 2600 else (b"DEL", b"k%d" % i)
                for i in range(6000)]
    path.write_bytes(b"".join(pack_command(c) for c in commands))
    items = list(CommandStream(path, "f").gathered(RUNS["some"]))
    runs = [i for i in items if isinstance(i, CommandRun)]
    assert runs and all(len(r.commands) <= RUN_COMMANDS and r.end - r.start <= RUN_BYTES + FAST_CHUNK + 4000
                        for r in runs)
    assert max(len(r.commands) for r in runs) == RUN_COMMANDS  # the small values: bounded by count
    assert max(r.end - r.start for r in runs) > RUN_BYTES - FAST_CHUNK - 4000  # the large ones: by bytes (fed)
    assert all(r.commands[0][0] == b"SET" for r in runs) and not isinstance(items[-1], CommandRun)
    assert expand(items) == list(CommandStream(path, "f", fast=False))
    assert [argv for _, _, argv in expand(items)] == commands


RESP3_ELEMENTS = [b"+OK\r\n", b":5\r\n", b"$-1\r\n", b"*1\r\n$1\r\na\r\n", b"#t\r\n", b",1.5\r\n", b"_\r\n",
                  b"=7\r\ntxt:abc\r\n", b"-ERR x\r\n", b"$03\r\nabc\r\n", b"$3\r\nabcXY"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=edits, cut=st.none() | st.floats(0, 1), chunk=st.sampled_from([3, 64, 1 << 20]),
       insert=st.none() | st.tuples(st.floats(0, 1), st.sampled_from([*RESP3_ELEMENTS, b"#TS:1\r\n", b"*0\r\n"])),
       runs=st.sampled_from(["none", "all", "some"]))
def test_fast_path_parses_exactly_like_the_server_rules(changes: list[tuple[float, int]], cut: float | None,
                                                        chunk: int, insert: tuple[float, bytes] | None,
                                                        runs: str) -> None:
    """hiredis reads the canonical part; whatever it reads otherwise (RESP3 elements inside a command, annotations,
    non-canonical lengths, corruption) must give exactly what the exact parser gives, command by command or
    gathered into runs (every command passing, or some)."""
    data = SAMPLES["commands"]
    if insert is not None:  # an element hiredis reads but the server does not, at a command or argument boundary
        where = int(insert[0] * len(data))
        where = data.rfind(b"\r\n", 0, where) + 2 if where else 0
        data = data[:where] + insert[1] + data[where:]
    corrupt = mutate(data, changes, cut, (0, len(data))) if changes[0][0] < 0.5 else data
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "appendonly.aof"
        path.write_bytes(corrupt)
        assert _parse(path, True, chunk, runs) == _parse(path, False, chunk)


@pytest.mark.parametrize("odd", [b"*3\r\n$3\r\nSET\r\n$02\r\nk9\r\n$1\r\nv\r\n",
                                 b"*3\r\n$3\r\nSET\r\n+k9\r\n$1\r\nv\r\n", b"*3\r\n$3\r\nSET\r\n$2\r\nk9\r\n:1\r\n"])
@pytest.mark.parametrize("passing", ["all", "some"])
def test_a_non_canonical_command_inside_a_run_is_read_by_the_exact_rules(odd: bytes, passing: str,
                                                                         tmp_path: Path) -> None:
    """A command hiredis reads otherwise than its canonical size says (a padded length, a simple string, an integer)
    in the middle of a run: the run ends before it is proven, and the exact parser reads from there."""
    path = tmp_path / "appendonly.aof"
    before = b"".join(pack_command((b"SET", b"k%d" % i, b"v")) for i in range(5))
    after = b"".join(pack_command(c) for c in [(b"DEL", b"k1"), *((b"SET", b"j%d" % i, b"w") for i in range(5))])
    path.write_bytes(before + odd + after)
    assert _parse(path, True, 1 << 20, passing) == _parse(path, False, 1 << 20)
