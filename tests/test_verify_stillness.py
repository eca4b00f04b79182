"""The counters behind the counting proof (verify/stillness.py) move with every kind of change, on every server."""

from __future__ import annotations

import time

import pytest

from migrate.activity import Marks, read_marks
from migrate.config import ConnectionSettings, parse_endpoint
from migrate.verify.stillness import Stillness
from tests.matrix import ALL, params


def marks(server) -> Marks:
    return read_marks(server.client(), ConnectionSettings(), parse_endpoint(server.url), "source")


def still(before: Marks, after: Marks) -> bool:
    return Stillness(before, before, after, before).unchanged


@pytest.mark.parametrize("name", params(ALL))
def test_reads_do_not_move_the_marks_and_every_change_does(servers, name):
    server = servers.get(name)
    client = server.client()
    client.mset({"a": "1", "b": "2"})
    client.set("short", "x", px=30)
    time.sleep(0.1)
    client.exists("short")  # the expired key is deleted now (expired_keys moves once, here)
    before = marks(server)
    client.get("a")
    client.type("b")
    client.scan(0, count=100)
    client.execute_command("PTTL", "a")
    client.exists("a", "b", "nope")
    assert still(before, marks(server))
    client.set("a", "1")  # the same value: still a write
    assert not still(before, marks(server))
    client.set("soon", "x", px=20)
    before = marks(server)
    time.sleep(0.1)
    client.get("soon")  # lazy expiry deletes it: no command wrote
    assert not still(before, marks(server))
    before = marks(server)
    client.save()  # rdb_changes_since_last_save drops to 0 on a save: the save counters show it
    assert not still(before, marks(server))
    before = marks(server)
    server.client(3).set("other-db", "x")
    after = marks(server)
    assert not still(before, after) and after.keys(3) == before.keys(3) + 1


def test_the_proof_needs_every_count_to_agree(servers):
    server = servers.get("valkey-8.1")
    server.client().mset({"a": "1", "b": "2"})
    m = marks(server)
    proof = Stillness(m, m, m, m)
    assert proof.proves_no_extra(0, 0, scanned=2, seen_on_target=2)
    assert not proof.proves_no_extra(0, 0, scanned=3, seen_on_target=3)  # SCAN returned a key twice
    assert not proof.proves_no_extra(0, 0, scanned=2, seen_on_target=1)  # one key missing on the target
    assert not proof.proves_no_extra(0, 1, scanned=2, seen_on_target=2)  # the target db holds another count
    server.client().set("c", "3")
    assert not Stillness(m, m, m, marks(server)).proves_no_extra(0, 0, scanned=2, seen_on_target=2)
