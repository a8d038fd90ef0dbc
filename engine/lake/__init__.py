"""The Iceberg lake: tables, refs and the month-partition merge; catalog, views and the scratch DuckDB;
maintenance; promotion of `dev` to `main`; the diff between them."""
