"""verify's pure pieces: digests independent of chunking, verdicts, sampling, reply shapes (no servers needed)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from migrate.verify.batch import Templates
from migrate.verify.compare import classify, settled
from migrate.verify.digest import MultisetDigest, OrderedDigest, ReadPlan, first_commands
from migrate.verify.replies import next_id, score_columns
from migrate.verify.result import Reason
from migrate.verify.sample import BottomK, Sampler, key_hash
from migrate.wire import pack

elements = st.lists(st.binary(max_size=20), max_size=40)


@given(elements, st.integers(min_value=1, max_value=10))
def test_ordered_digest_does_not_depend_on_chunk_boundaries(items, size):
    whole, chunked = OrderedDigest(), OrderedDigest()
    whole.add(items)
    for at in range(0, len(items), size):
        chunked.add(items[at:at + size])
    assert whole.result() == chunked.result()


def test_ordered_digest_sees_order_and_boundaries():
    def digest(items):
        d = OrderedDigest()
        d.add(items)
        return d.result()

    assert digest([b"a", b"b"]) != digest([b"b", b"a"])
    assert digest([b"ab", b"c"]) != digest([b"a", b"bc"])


@given(elements)
def test_multiset_digest_ignores_order_and_dedup_removes_repeats(items):
    forward, backward, dedup = MultisetDigest(), MultisetDigest(), MultisetDigest(dedup=True)
    forward.add(map(hash, items))
    backward.add(map(hash, reversed(items)))
    dedup.add(map(hash, items + items))
    unique = MultisetDigest()
    unique.add(map(hash, set(items)))
    assert (forward.total, forward.count) == (backward.total, backward.count)
    assert (dedup.total, dedup.count) == (unique.total, unique.count)


def test_score_columns_read_resp2_and_resp3_alike():
    resp2 = [b"a", b"0.30000000000000004", b"b", b"inf", b"c", b"-1e-300"]
    resp3 = [[b"a", 0.1 + 0.2], [b"b", float("inf")], [b"c", -1e-300]]
    assert score_columns(resp2) == score_columns(resp3) == ([b"a", b"b", b"c"], [0.1 + 0.2, float("inf"), -1e-300])
    assert score_columns([b"a", b"1.000000001"])[1] != score_columns([b"a", b"1"])[1]


def test_next_id_is_the_smallest_following_id():
    assert next_id(b"5-1") == b"5-2"
    assert next_id(b"5-18446744073709551615") == b"6-0"


def test_templates_pack_like_the_generic_packer():
    plan = ReadPlan(chunk=7, string_chunk=11)
    templates = Templates(plan)
    for kind in (b"string", b"list", b"zset", b"set", b"hash", b"stream", b"ReJSON-RL"):
        for key in (b"k", b"bin:\x00%s\r\n", "ключ".encode()):
            data, count = templates.pack(kind, key)
            cmds = first_commands(kind, key, plan)
            assert data == b"".join(pack(c) for c in cmds) and count == len(cmds)


def test_classify_reasons():
    tol = 1000
    assert classify((b"string", -1, b"v"), (b"string", -1, b"v"), tol) is None
    assert classify((b"string", -1, b"v"), (b"none", -2, None), tol)[0] is Reason.MISSING
    assert classify((b"none", -2, None), (b"hash", -1, None), tol)[0] is Reason.EXTRA
    assert classify((b"string", 5000, b"v"), (b"string", -2, b""), tol)[0] is Reason.MISSING  # expired in between
    assert classify((b"set", -1, None), (b"string", -1, None), tol)[0] is Reason.TYPE
    assert classify((b"string", 5000, b"v"), (b"string", 5900, b"v"), tol) is None
    assert classify((b"string", 5000, b"v"), (b"string", 6100, b"v"), tol)[0] is Reason.TTL
    assert classify((b"string", 5000, b"v"), (b"string", -1, b"v"), tol)[0] is Reason.TTL
    verdict = classify((b"string", 5000, b"v"), (b"string", -1, b"w"), tol)
    assert verdict[0] is Reason.VALUE and "TTL differs too" in verdict[1]
    hashes = ({"value": 1, "size": 1, "field_ttls": ((b"f", 10_000),)}, {"value": 1, "size": 1})
    assert classify((b"hash", -1, hashes[0]), (b"hash", -1, hashes[1]), tol)[0] is Reason.FIELD_TTL_UNSUPPORTED
    assert classify((b"hash", -1, hashes[1]), (b"hash", -1, hashes[0]), tol)[0] is Reason.FIELD_TTL
    moved = {"value": 1, "size": 1, "field_ttls": ((b"f", 10_500),)}
    assert classify((b"hash", -1, hashes[0]), (b"hash", -1, moved), tol) is None
    assert classify((b"hash", -1, hashes[0]), (b"hash", -1, moved), 100)[0] is Reason.FIELD_TTL
    streams = ({"size": 2, "entries": 1, "last_id": b"5-0", "entries_added": 3},
               {"size": 2, "entries": 1, "last_id": b"5-0", "entries_added": 4})
    verdict = classify((b"stream", -1, streams[0]), (b"stream", -1, streams[1]), tol)
    assert verdict == (Reason.VALUE, "entries-added differs (source 3, target 4)")
    unstable = {"unstable": True}
    assert classify((b"list", -1, unstable), (b"list", -1, dict(unstable)), tol)[0] is Reason.VALUE
    older = {"size": 2, "entries": 1, "last_id": b"5-0"}  # a server that does not expose entries-added
    assert classify((b"stream", -1, older), (b"stream", -1, streams[1]), tol) is None


def test_sampling_is_seeded_and_exact():
    keys = [b"key:%d" % i for i in range(2000)]
    picks = []
    for seed in (1, 1, 2):
        bottom = BottomK(50, seed)
        for key in keys + keys[:100]:  # SCAN may repeat keys
            bottom.offer(0, key)
        picks.append(bottom.keys_by_db()[0])
    assert len(picks[0]) == 50 and picks[0] == picks[1] and picks[0] != picks[2]
    threshold = max(key_hash(k, 1) for k in picks[0])
    assert sorted(k for k in keys if Sampler("count", threshold, 1).wants(k)) == sorted(picks[0])
    share = sum(Sampler("percent", 0.1, 7).wants(k) for k in keys) / len(keys)
    assert 0.07 < share < 0.13


def test_equal_bytes_settle_keys_level_and_small_strings_only():
    assert settled(b"+hash\r\n:-1\r\n", full=False, strings_first=False, string_chunk=8)
    assert not settled(b":-1\r\n$2\r\nab\r\n", full=True, strings_first=False, string_chunk=8)
    assert settled(b":-1\r\n$2\r\nab\r\n:-2\r\n$0\r\n\r\n", full=True, strings_first=True, string_chunk=8)
    assert not settled(b":-1\r\n-WRONGTYPE Operation\r\n", full=True, strings_first=True, string_chunk=8)
    assert not settled(b"-NOPERM no\r\n:-1\r\n", full=False, strings_first=False, string_chunk=8)
    assert not settled(b"+string\r\n-NOPERM no\r\n", full=False, strings_first=False, string_chunk=8)
    assert not settled(b":-1\r\n$8\r\nabcdefgh\r\n", full=True, strings_first=True, string_chunk=8)
