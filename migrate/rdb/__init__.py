"""RDB and DUMP format engine: stream RDB files, decode serialized values, summarise files for preflight."""

from migrate.rdb.constants import logical_type, module_encoding_version, module_type_name, type_info, type_name
from migrate.rdb.decode import decode_object
from migrate.rdb.errors import RdbFormatError
from migrate.rdb.reader import RdbReader, read_records
from migrate.rdb.records import (
    AuxField,
    End,
    FunctionRecord,
    KeyRecord,
    ModuleAux,
    Record,
    ResizeDb,
    SelectDb,
    SlotImport,
    SlotInfo,
)
from migrate.rdb.summary import RdbSummary, summarize

__all__ = [
    "AuxField",
    "End",
    "FunctionRecord",
    "KeyRecord",
    "ModuleAux",
    "RdbFormatError",
    "RdbReader",
    "RdbSummary",
    "Record",
    "ResizeDb",
    "SelectDb",
    "SlotImport",
    "SlotInfo",
    "decode_object",
    "logical_type",
    "module_encoding_version",
    "module_type_name",
    "read_records",
    "summarize",
    "type_info",
    "type_name",
]
