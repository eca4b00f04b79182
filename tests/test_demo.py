"""The README's demo command keeps working: every chapter of scripts/demo.py end to end on a small dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.sandbox import load_manifest

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_tells_the_whole_story():
    missing = {"redis-8.0.2", "redis-7.0", "valkey-8.1"} - set(load_manifest())
    if missing:
        pytest.skip(f"not provisioned: {', '.join(sorted(missing))} (run: scripts/servers)")
    done = subprocess.run([sys.executable, "scripts/demo.py", "--keys", "2000"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    # replay, convert, sync, relay, and the cluster's replay then reload
    assert out.count("PARITY: the target matches the source") == 8, out[-3000:]
    assert "cutover point reached at source offset" in done.stderr + out
    assert "demo: done" in out
