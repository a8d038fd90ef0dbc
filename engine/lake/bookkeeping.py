"""The columns phlo adds to every stored raw row: not part of what the row says."""

BOOKKEEPING_COLUMNS = ("_phlo_ingested_at", "_phlo_run_id")
"""Columns that record when and by which run a row was stored; a merge ignores them when comparing."""
