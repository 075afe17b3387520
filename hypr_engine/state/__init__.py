"""SQLite state: what *should* be. /proc says what *is* (see vms/liveness.py)."""
