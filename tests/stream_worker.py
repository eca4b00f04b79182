"""A stream applier in its own process, for the kill -9 tests: resume where the target's marker says, apply the rest.

    python -m tests.stream_worker TARGET_URL STREAM_FILE STREAM_ID POLICY [PAUSE_MS]

The stream file holds RESP commands; offsets are byte positions in it. Prints "ready" once connected, so the test
kills it while it applies, not while Python starts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from migrate.config import ConnectionSettings, parse_endpoint
from migrate.connection import open_client
from migrate.run.options import OnIncompatible
from migrate.stream import Applier, ApplyOptions, TargetProfile, Translator, read_marker
from tests.stream_support import read_stream


def main(url: str, stream: str, stream_id: str, policy: str, pause_ms: str = "0") -> None:
    endpoint = parse_endpoint(url)
    settings = ConnectionSettings()
    client = open_client(endpoint, settings, "target", db=0)
    marker = read_marker(client, stream_id)
    start, source_db = (marker.offset, marker.source_db) if marker else (0, 0)
    translator = Translator(TargetProfile.of(client), policy=OnIncompatible(policy), source_db=source_db)
    pause = int(pause_ms) / 1000

    def slow_down(offset: int, db: int) -> None:
        time.sleep(pause)

    print("ready", start, flush=True)
    with Applier(endpoint, settings, stream_id, ApplyOptions(batch_commands=40), tally=translator.tally,
                 on_applied=slow_down) as applier:
        applier.apply_all(translator.translate(read_stream(Path(stream), start)))
    print("done", applier.applied_offset, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
