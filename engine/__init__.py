"""The phlo-tui engine: everything that is not UI."""

import os

# pyarrow's default mimalloc pool keeps freed memory: a year's backfill peaked at 545 MB with it
# and 427 MB with the system allocator (bench/ingest.py). Must be set before pyarrow allocates.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
