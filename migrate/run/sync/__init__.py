"""`migrate run --strategy sync`: a replica of the source feeding the target until a cutover (docs/sync.md).

api.py holds the entry (`sync(config, control)`) and the job (snapshot, stream, recovery), cutover.py the write pause
and the drain, notify.py the fallback for sources that refuse replication (live replay + keyspace notifications),
state.py and report.py what a running sync shows (status file, Prometheus metrics, logs), checkpoint.py what a resume
needs, control.py how the outside asks for the cutover. Only control is imported here: it is all the CLI needs before
the verb runs.
"""

from migrate.run.sync.control import SyncControl

__all__ = ["SyncControl"]
