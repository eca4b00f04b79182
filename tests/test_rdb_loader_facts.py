"""The loader facts the transcoder relies on, measured on every server of the matrix at start-up.

migrate.facts.types.OPCODES_READ says which opcodes each release's RDB loader reads; TYPE_BYTES_READ which object
types. Here each server starts on tiny files holding one opcode (SLOT_INFO, FUNCTION2), an unknown AUX field, or a
malformed `slot-info` AUX field, and must load or refuse each exactly as the tables (and the transcoder) assume.
"""

from __future__ import annotations

import pytest

from fixtures.sandbox import LocalServer, ServerStartError, free_port
from migrate.facts.releases import parse_version, rdb_version_written
from migrate.facts.types import readable_opcodes
from migrate.rdb.writer import header
from tests.matrix import ALL, params
from tests.rdb_builders import length, string
from tests.transcode_support import aux, rdb_bytes, record, select

KEY = record(0, b"k", string(b"v"))
CASES = {
    "SLOT_INFO": (244, b"\xf4" + length(5) + length(1) + length(0)),
    "FUNCTION2": (245, b"\xf5" + string(b"#!lua name=factlib\nredis.register_function('f', function() return 1 end)")),
}


def loads(servers, name: str, data: bytes, tmp_path) -> bool:
    (tmp_path / "probe.rdb").write_bytes(data)
    server = LocalServer(servers.binaries[name], ("--dbfilename", "probe.rdb"), tmp_path)
    try:
        server.start(port=free_port(), timeout=10)  # a fixed port: a refused file is tried once, not five times
    except ServerStartError:
        return False
    try:
        return server.client().get(b"k") == b"v"
    finally:
        server.stop()


def own_header(name: str, servers) -> tuple[str, tuple[int, ...], bytes]:
    binary = servers.binaries[name]
    version = parse_version(binary.version)
    rdb = rdb_version_written(binary.product, version)
    assert rdb is not None
    return binary.product, version, header(rdb)  # the server's own version and magic


@pytest.mark.parametrize("name", params(ALL))
@pytest.mark.parametrize("opcode", list(CASES))
def test_opcodes_load_as_the_table_says(servers, tmp_path, name, opcode):
    if name not in servers.binaries:
        pytest.skip(f"{name} is not provisioned")
    product, version, magic = own_header(name, servers)
    byte, body = CASES[opcode]
    expected = byte in readable_opcodes(product, version)
    assert loads(servers, name, rdb_bytes(magic, aux(b"redis-ver", b"7.2.4"), body, select(0), KEY), tmp_path) \
        is expected


@pytest.mark.parametrize("name", params(ALL))
def test_unknown_aux_fields_are_skipped_and_slot_info_aux_is_parsed_by_valkey(servers, tmp_path, name):
    if name not in servers.binaries:
        pytest.skip(f"{name} is not provisioned")
    product, _, magic = own_header(name, servers)
    assert loads(servers, name, rdb_bytes(magic, aux(b"migrate-unknown", b"x"), select(0), KEY), tmp_path)
    assert loads(servers, name, rdb_bytes(magic, aux(b"slot-info", b"5,1,0"), select(0), KEY), tmp_path)
    malformed = rdb_bytes(magic, aux(b"slot-info", b"garbage"), select(0), KEY)
    assert loads(servers, name, malformed, tmp_path) is (product != "valkey")
