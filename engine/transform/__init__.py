"""The SQL models: finding them, building bronze, silver, gold and the marts in DuckDB, and the
quality gates and freshness checks on what they produce."""
