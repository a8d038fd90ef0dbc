"""pyiceberg's write-time schema check, without its report machinery when the written schema is the
table's own.

Every append and overwrite runs `_check_pyarrow_schema_compatible`: it converts the Arrow schema to
an Iceberg one, then walks both with a visitor that builds a `rich` table for its error message, which
imports rich (about a tenth of a second in a fresh process, once per run). When the converted schema
has the table's field ids, each with the same required-ness and the same primitive type (or the same
kind of container), that walk can only pass (it looks up each of the table's fields by id and
compares just those), so it is skipped; any other schema, compatible or not, goes through pyiceberg's check as before,
so a real mismatch reports exactly what it reported.
"""

from __future__ import annotations

import pyarrow as pa
import pyiceberg.io.pyarrow as pyiceberg_pyarrow
from pyiceberg.schema import Schema
from pyiceberg.table import TableProperties
from pyiceberg.typedef import TableVersion
from pyiceberg.types import PrimitiveType

_pyiceberg_check = pyiceberg_pyarrow._check_pyarrow_schema_compatible
"""pyiceberg's own check, for every schema that is not provably the table's."""


def check_pyarrow_schema_compatible(
    requested_schema: Schema,
    provided_schema: pa.Schema,
    downcast_ns_timestamp_to_us: bool = False,
    format_version: TableVersion = TableProperties.DEFAULT_FORMAT_VERSION,
) -> None:
    """pyiceberg.io.pyarrow._check_pyarrow_schema_compatible, passing at once for the table's own schema."""
    try:
        converted = pyiceberg_pyarrow.pyarrow_to_schema(
            provided_schema,
            name_mapping=requested_schema.name_mapping,
            downcast_ns_timestamp_to_us=downcast_ns_timestamp_to_us,
            format_version=format_version,
        )
    except ValueError:
        converted = None
    if converted is not None and _shape(converted) == _shape(requested_schema):
        return
    _pyiceberg_check(requested_schema, provided_schema, downcast_ns_timestamp_to_us, format_version)


def _shape(schema: Schema) -> dict[int, tuple[bool, object]]:
    """What pyiceberg's compatibility visitor compares of each field (not names or docs)."""
    return {
        field_id: (
            field.required,
            field.field_type if isinstance(field.field_type, PrimitiveType) else type(field.field_type),
        )
        for field_id, field in schema._lazy_id_to_field.items()
    }


def install() -> None:
    """Route pyiceberg's writes through the check above (idempotent; pyiceberg imports the check
    inside each write method, so the module attribute is what it calls)."""
    pyiceberg_pyarrow._check_pyarrow_schema_compatible = check_pyarrow_schema_compatible
