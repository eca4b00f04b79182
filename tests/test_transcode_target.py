"""TargetFormat: derived from the fact tables for a PRODUCT:VERSION spec, and from a live server's identity."""

from __future__ import annotations

import pytest

from migrate.errors import ConfigError
from migrate.identity import identify
from migrate.rdb.target import TargetFormat, target_format
from tests.matrix import ALL, params


def test_specs_of_the_matrix():
    v81 = target_format("valkey:8.1")
    assert (v81.rdb_version, v81.magic, v81.field_ttls) == (11, b"REDIS0011", False)
    assert v81.capabilities.readable == frozenset(range(0, 6)) | frozenset(range(9, 22))
    assert 244 not in v81.capabilities.opcodes and 245 in v81.capabilities.opcodes
    v91 = target_format("valkey-9.1.2")
    assert (v91.rdb_version, v91.magic, v91.field_ttls) == (80, b"VALKEY080", True)
    assert v91.reads_type(22, "valkey") and not v91.reads_type(22, "redis") and not v91.reads_type(25, "redis")
    assert target_format("valkey:9.2").magic == b"VALKEY081"
    r70 = target_format("redis:7.0")
    assert (r70.magic, r70.reads_type(19, "redis"), r70.reads_type(20, "redis")) == (b"REDIS0010", True, False)
    r60 = target_format("redis:6.0")
    assert (r60.magic, 245 in r60.capabilities.opcodes, r60.reads_type(15, "redis"), r60.reads_type(16, "redis")) == (
        b"REDIS0009", False, True, False)
    r80 = target_format("redis:8.0")
    assert (r80.magic, r80.field_ttls, r80.reads_type(24, "redis"), 244 in r80.capabilities.opcodes) == (
        b"REDIS0012", True, True, True)


@pytest.mark.parametrize("spec", ["valkey", "valkey:", "keydb:6.0", "dragonfly:1.0", "memcached:1.6", ":8.1"])
def test_bad_specs_are_config_errors(spec):
    with pytest.raises(ConfigError):
        target_format(spec)


@pytest.mark.parametrize("name", params(ALL))
def test_live_identity_gives_the_same_format_as_its_spec(servers, name):
    server = servers.get(name)
    identity = identify(server.client())
    live = TargetFormat.from_identity(identity)
    spec = target_format(f"{server.binary.product}:{server.binary.version}")
    assert live == TargetFormat.for_release(spec.product, spec.version, databases=identity.databases)
    assert live.databases == 16 and live.label == identity.label
