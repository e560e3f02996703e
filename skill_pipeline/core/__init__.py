"""Pure logic: no Dagster, no I/O. Everything here is testable with plain values."""
