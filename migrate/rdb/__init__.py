"""RDB and DUMP format engine: stream RDB files, decode serialized values, summarise files for preflight.

The names below are imported on first use (PEP 562): importing any submodule (every CLI verb reads
migrate.rdb.values) runs this file, and the reader, decoder and summariser are not needed by every verb.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migrate.rdb.constants import (
        logical_type,
        module_encoding_version,
        module_type_name,
        type_info,
        type_name,
    )
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

_SUBMODULE_OF = {
    **dict.fromkeys(("logical_type", "module_encoding_version", "module_type_name", "type_info", "type_name"),
                    "constants"),
    "decode_object": "decode",
    "RdbFormatError": "errors",
    "RdbReader": "reader",
    "read_records": "reader",
    **dict.fromkeys(("AuxField", "End", "FunctionRecord", "KeyRecord", "ModuleAux", "Record", "ResizeDb", "SelectDb",
                     "SlotImport", "SlotInfo"), "records"),
    "RdbSummary": "summary",
    "summarize": "summary",
}


def __getattr__(name: str) -> Any:
    submodule = _SUBMODULE_OF.get(name)
    if submodule is None:  # also how `from migrate.rdb import compat` falls back to importing the submodule
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
    globals()[name] = value
    return value


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
