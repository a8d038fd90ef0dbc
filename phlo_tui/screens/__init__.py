"""The dashboard pages, one screen per module."""
