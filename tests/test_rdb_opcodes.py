"""Opcodes and old file versions beyond the matrix's plain saves.

Cluster-mode saves (Redis's SLOT_INFO opcode, Valkey's slot-info aux field) come from real servers; module aux data,
Valkey's SLOT_IMPORT and pre-checksum/old-expiry files are built byte by byte.
"""

from __future__ import annotations

import io
import struct
import time

import pytest

from migrate.rdb.constants import module_id
from migrate.rdb.decode import decode_object
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.reader import RdbReader, read_records
from migrate.rdb.records import AuxField, End, KeyRecord, ModuleAux, SlotImport, SlotInfo
from migrate.rdb.values import HashValue
from tests import rdb_builders as B
from tests.matrix import params


def cluster_server(servers, name: str):
    server = servers.fresh(name, "--cluster-enabled", "yes")
    client = server.client()
    client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    deadline = time.monotonic() + 10
    while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
        assert time.monotonic() < deadline, "single-node cluster did not come up"
        time.sleep(0.05)
    return server, client


@pytest.mark.parametrize("name", params(["redis-8.0.2", "valkey-9.1"]))
def test_cluster_mode_slot_sizes(servers, name):
    server, client = cluster_server(servers, name)
    keys = [f"{{tag{i % 3}}}:k{i}" for i in range(30)]
    for key in keys:
        client.set(key, "v", px=3_600_000 if key.endswith("0") else None)
    client.save()
    records = list(read_records(server.dir / "dump.rdb"))
    assert sorted(r.key.decode() for r in records if isinstance(r, KeyRecord)) == sorted(keys)
    slots = {int(client.execute_command("CLUSTER", "KEYSLOT", k)) for k in keys}
    expected = {s: int(client.execute_command("CLUSTER", "COUNTKEYSINSLOT", s)) for s in slots}
    if name.startswith("redis"):
        infos = [r for r in records if isinstance(r, SlotInfo)]
        assert {i.slot: i.size for i in infos} == expected
        assert sum(i.expires_size for i in infos) == sum(1 for k in keys if k.endswith("0"))
    else:  # Valkey writes "slot,keys,expires,volatile-items" as an aux field instead of the opcode
        aux = [r.value.decode().split(",") for r in records if isinstance(r, AuxField) and r.name == "slot-info"]
        assert {int(a[0]): int(a[1]) for a in aux} == expected


def valkey_file(body: bytes) -> bytes:
    data = b"VALKEY080" + body + b"\xff"
    return data + struct.pack("<Q", B.CRC64.calc(data))


def test_slot_import_and_module_aux_records(tmp_path):
    mid = module_id("ReJSON-RL", 3)
    module_ops = (B.length(2) + B.length(7) + B.length(5) + B.string(b"conf") + B.length(4) + struct.pack("<d", 1.5)
                  + B.length(3) + struct.pack("<f", 2.0) + B.length(1) + B.length(9) + B.length(0))
    job = b"j" * 40
    aux_record = b"\xf7" + B.length(mid) + B.length(2) + B.length(1) + module_ops  # module aux, before the keys
    body = (aux_record
            + b"\xf3" + B.string(job) + B.length(2) + B.length(0) + B.length(99) + B.length(200) + B.length(300)
            + b"\xfe\x00" + b"\x07" + B.string(b"doc") + B.length(mid) + module_ops)
    path = tmp_path / "mixed.rdb"
    path.write_bytes(valkey_file(body))
    records = list(read_records(path))
    aux = next(r for r in records if isinstance(r, ModuleAux))
    assert (aux.module_type, aux.encver, aux.when, aux.raw) == ("ReJSON-RL", 3, 1, module_ops)
    slot_import = next(r for r in records if isinstance(r, SlotImport))
    assert slot_import == SlotImport(job, ((0, 99), (200, 300)), 9 + len(aux_record))
    doc = next(r for r in records if isinstance(r, KeyRecord))
    assert (doc.module_type, doc.module_encver, doc.payload) == ("ReJSON-RL", 3, B.length(mid) + module_ops)
    value = decode_object(doc.type_byte, doc.payload)
    assert (value.type_name, value.encoding_version, value.module_id) == ("ReJSON-RL", 3, mid)  # type: ignore[union-attr]
    assert isinstance(records[-1], End) and records[-1].checksum_ok


def test_module_aux_without_its_when_field_is_refused(tmp_path):
    body = b"\xf7" + B.length(module_id("ReJSON-RL", 3)) + B.length(5) + B.string(b"x") + B.length(0)
    with pytest.raises(RdbFormatError, match="'when'"):
        list(RdbReader(io.BytesIO(valkey_file(body))).records())


def test_an_rdb_6_file_with_second_expiries_and_old_encodings():
    """RDB 6 (Redis 2.6): EXPIRETIME in seconds, zipmap/ziplist/intset encodings, ASCII-double sorted sets."""
    zipmap = B.zipmap([(b"f", b"v"), (b"g", b"w")])
    intset = struct.pack("<II", 2, 3) + struct.pack("<3h", -1, 5, 300)
    body = (b"\xfe\x00"
            + b"\xfd" + struct.pack("<i", 2_000_000_000) + b"\x00" + B.string(b"old") + B.string(b"timer")
            + b"\x09" + B.string(b"zm") + B.string(zipmap)
            + b"\x0a" + B.string(b"zl") + B.string(B.ziplist([b"a", 7, b"b"]))
            + b"\x0b" + B.string(b"is") + B.string(intset)
            + b"\x03" + B.string(b"zs") + B.length(2) + B.string(b"x") + B.ascii_double(2.5) + B.string(b"y")
            + B.ascii_double(float("-inf")))
    data = b"REDIS0006" + body + b"\xff"
    data += struct.pack("<Q", B.CRC64.calc(data))
    reader = RdbReader(io.BytesIO(data))
    keys = {r.key: r for r in reader.records() if isinstance(r, KeyRecord)}
    assert keys[b"old"].expire_ms == 2_000_000_000_000
    assert decode_object(9, keys[b"zm"].payload) == HashValue({b"f": b"v", b"g": b"w"})
    assert decode_object(10, keys[b"zl"].payload) == [b"a", b"7", b"b"]
    assert decode_object(11, keys[b"is"].payload) == {b"-1", b"5", b"300"}
    assert decode_object(3, keys[b"zs"].payload) == [(b"y", float("-inf")), (b"x", 2.5)]
    assert reader.finished and reader.rdb_version == 6
