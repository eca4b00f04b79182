"""`migrate run --strategy relay`: migrate between the servers, a replica of the source and the primary of the target
(docs/relay.md). api.py holds the entry (`relay(config, control)`) and the job, target.py what is done to the target
(REPLICAOF, its masterauth, back to a primary), offsets.py the map from the relay's offsets to the source's. The
cutover, the status file, the metrics and the control are the sync's (migrate.run.sync)."""
