"""The RDB and DUMP format engine: pure functions and classes over bytes and decoded values, no server connections.

- reader: `RdbReader(path_or_stream)` streams the records of an RDB file (RDB 1-12, Valkey 80/81) in bounded memory;
- decode: `decode_object(type_byte, body, rdb_version=...)` turns one serialized value into the model of values.py;
- summary: `summarize(path)` takes a census of a file without materialising values;
- dump: DUMP payloads (CRC64, footer, restamp) and `plan_conversion(payload, capabilities)`: as is, restamped,
  rewritten as commands, or not at all, for a target described by migrate.facts.capabilities.Capabilities;
- rewrite: the commands that rebuild a decoded value on a target that cannot RESTORE it (executed by migrate.run).
"""
