"""Every server of the matrix starts, and the library identifies it correctly."""

from __future__ import annotations

import re
import subprocess

import pytest

from migrate.config import parse_endpoint
from migrate.connection import open_client
from migrate.facts.releases import parse_version, rdb_version_written
from migrate.identity import identify
from tests.matrix import ALL, params

EXPECTED_RDB = {"redis-6.0": 9, "redis-7.0": 10, "redis-8.0.2": 12, "redis-8.0.6": 12,
                "valkey-8.0": 11, "valkey-8.1": 11, "valkey-9.1": 80}


def binary_version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"v=(\d+\.\d+\.\d+)", out)
    assert match, out
    return match.group(1)


@pytest.mark.parametrize("name", params(ALL))
def test_identity_matches_the_binary(servers, name):
    server = servers.get(name)
    client = open_client(parse_endpoint(server.url), role="source")
    ident = identify(client)
    assert ident.product == name.split("-")[0]
    assert ident.version_text == binary_version(server.binary.server)
    assert ident.rdb_version == EXPECTED_RDB[name]
    assert ident.mode == "standalone" and ident.role == "master"
    assert ident.databases == 16


@pytest.mark.parametrize("name", params(ALL))
def test_rdb_version_written_matches_a_real_dump(servers, name):
    """The RDB version in the DUMP footer is the server's own: the table agrees with the server."""
    server = servers.get(name)
    client = server.client()
    client.set("k", "v")
    payload = client.dump("k")
    footer_version = int.from_bytes(payload[-10:-8], "little")
    assert footer_version == rdb_version_written(name.split("-")[0], parse_version(server.binary.version))
