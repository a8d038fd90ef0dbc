"""Raw tables declared with new trailing columns gain them in a lake written before they existed."""

from __future__ import annotations

from pyiceberg.table import Table

from engine.ingest.tables import TableDef


def add_declared_columns(table: Table, tdef: TableDef) -> Table:
    """`table` with the optional columns its declaration appends after the stored ones.

    Nothing changes unless the stored columns are exactly the declaration's first columns (names,
    types, required) and every further declared column is optional: old rows read those as null.
    Any other difference is left for the declaration check to refuse.
    """
    stored = [(f.name, str(f.field_type), f.required) for f in table.schema().fields]
    declared = [(f.name, str(f.field_type), f.required) for f in tdef.schema.fields]
    added = tdef.schema.fields[len(stored) :]
    if len(declared) <= len(stored) or declared[: len(stored)] != stored or any(f.required for f in added):
        return table
    with table.update_schema() as update:
        for field in added:
            update.add_column(field.name, field.field_type, doc=field.doc)
    return table
