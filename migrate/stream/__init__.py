"""Replaying a source's command stream (replication stream, AOF) into a target of another product or release.

    target = TargetProfile.of(target_client)              # identity + command set
    marker = read_marker(client_on_db0, "sync-1")          # where the target really is, after any crash
    translator = Translator(target, policy=OnIncompatible.LOSSY, db_map=DbMap(),
                            source_db=marker.source_db if marker else 0)
    with Applier(endpoint, settings, "sync-1", tally=translator.tally) as applier:
        applier.apply_all(translator.translate(commands))  # (argv, end offset) pairs, after marker.offset

docs/stream.md describes the table, the facts behind it, the policy, the db map and the exactly-once design.

table.py holds the translation table (data, with the facts behind it), normalize.py and fit.py its two stages,
translator.py the per-stream state and the policy, applier.py the exactly-once applier, marker.py the marker key,
resp.py the RESP form of units for a relay.
"""

from migrate.stream.applier import Applier, ApplyOptions, TargetErrors, TargetLostError
from migrate.stream.fit import Fitter, Outcome, TargetProfile
from migrate.stream.marker import (
    MARKER_DB,
    MARKER_PREFIX,
    Marker,
    is_marker_key,
    marker_key,
    read_marker,
    remove_marker,
)
from migrate.stream.model import Argv, DbMap, IssueLog, StreamTally, TargetCommand, Unit, argv_of
from migrate.stream.resp import RespWriter
from migrate.stream.translator import SourceCommand, Translator

__all__ = [
    "MARKER_DB", "MARKER_PREFIX", "Applier", "ApplyOptions", "Argv", "DbMap", "Fitter", "IssueLog", "Marker",
    "Outcome", "RespWriter", "SourceCommand", "StreamTally", "TargetCommand", "TargetErrors", "TargetLostError",
    "TargetProfile", "Translator", "Unit", "argv_of", "is_marker_key", "marker_key", "read_marker", "remove_marker",
]
