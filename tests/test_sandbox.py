"""The throwaway-server launcher used by the demo, the tests and bench/ never leaves a server running."""

from __future__ import annotations

import pytest

from fixtures.sandbox import load_manifest, start_server


def test_with_start_server_runs_one_process_and_stops_it():
    if "valkey-8.1" not in load_manifest():
        pytest.skip("valkey-8.1 is not provisioned")
    server = start_server("valkey-8.1")
    first = server.process
    with server:
        assert server.running and server.client().ping()
    assert server.process is first  # entering did not start a second server
    assert first is not None and first.poll() is not None  # and leaving stopped the one there is
