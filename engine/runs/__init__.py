"""What the engine remembers about its own work: run records and the run store, the writer lease, the
retry policy and logging."""
