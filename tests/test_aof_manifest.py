"""The multi-part manifest parser, rule by rule (src/aof.c aofLoadManifestFromFile, src/sds.c sdssplitargs), and the
ground truth for the rules a test can show: a server refuses the manifests the parser refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.aof import ManifestError, open_aof_input, read_manifest
from migrate.aof.manifest import split_args
from tests.aof_support import CORPUS, server_refuses

GOOD = "file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n"


def write(tmp_path: Path, text: bytes | str) -> Path:
    path = tmp_path / "appendonly.aof.manifest"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize(("line", "tokens"), [
    (b"file a seq 1 type b", [b"file", b"a", b"seq", b"1", b"type", b"b"]),
    (b'  "a b"  \'c d\' ', [b"a b", b"c d"]),
    (b'"\\x41\\x4a\\n\\r\\t\\b\\a\\"\\\\z"', [b"AJ\n\r\t\b\a\"\\z"]),
    (b"'it\\'s' '\\n'", [b"it's", b"\\n"]),
    (b'ab"cd"', [b"abcd"]),
    (b'"\\x4g"', [b"x4g"]),  # not two hex digits: a plain escape of 'x'
    (b"", []),
])
def test_split_args(line: bytes, tokens: list[bytes]) -> None:
    assert split_args(line) == tokens


@pytest.mark.parametrize("line", [b'"open', b"'open", b'"a"b', b"'a'b"])
def test_split_args_refuses_unbalanced_quotes(line: bytes) -> None:
    assert split_args(line) is None


def test_reads_base_incr_and_history_in_order(tmp_path: Path) -> None:
    manifest = read_manifest(write(tmp_path, "# a comment\nfile h.aof seq 1 type h\n" + GOOD
                                   + "FILE x.aof SEQ 5 TYPE i startoffset 3 endoffset 9\n"))
    assert manifest.base is not None and manifest.base.name == "appendonly.aof.1.base.rdb"
    assert [e.name for e in manifest.incrs] == ["appendonly.aof.1.incr.aof", "x.aof"]
    assert [e.name for e in manifest.history] == ["h.aof"]
    assert [e.name for e in manifest.loaded] == ["appendonly.aof.1.base.rdb", "appendonly.aof.1.incr.aof", "x.aof"]


@pytest.mark.parametrize(("text", "words"), [
    (b"", "empty"),
    (GOOD + "\n", "expected"),
    (GOOD.rstrip("\n"), "newline"),
    ("file " + "x" * 1100 + " seq 1 type i\n", "longer than 1024"),
    ("file a seq 1 type b\nfile b seq 2 type b\n", "second base"),
    ("file a seq 2 type i\nfile b seq 2 type i\n", "do not increase"),
    ("file ../a seq 1 type i\n", "bare name"),
    ("file a seq 0 type i\n", "non-zero seq"),
    ("file a seq 1 type x\n", "unknown AOF file type"),
    ("file a seq 1\n", "expected"),
    ("file a seq 1 type i extra\n", "expected"),
    ('file "a seq 1 type i\n', "expected"),
])
def test_refused_manifests(tmp_path: Path, text: bytes | str, words: str) -> None:
    with pytest.raises(ManifestError, match=words) as caught:
        read_manifest(write(tmp_path, text))
    assert caught.value.exit_code == 6


@pytest.mark.parametrize("text", [GOOD + "\n", "file a seq 2 type i\nfile b seq 2 type i\n",
                                  "file a seq 1 type x\n", GOOD.rstrip("\n")])
def test_server_refuses_the_same_manifests(tmp_path: Path, text: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("appendonly.aof.1.base.rdb", "appendonly.aof.1.incr.aof", "a", "b"):
        (folder / name).write_bytes(b"")
    write(folder, text)
    refused, log = server_refuses("redis-7.0", folder, tmp_path / "server")
    assert refused and "MANIFEST" in log.upper()


def test_history_files_need_not_exist() -> None:
    aof = open_aof_input(CORPUS / "redis-7.0-split-incr")
    assert [h.name for h in aof.history] == ["appendonly.aof.1.incr.aof"]
    assert not (CORPUS / "redis-7.0-split-incr" / "appendonly.aof.1.incr.aof").exists()
    assert [f.name for f in aof.files][-1] == "appendonly.aof.3 incr.aof"  # a quoted name with a space
