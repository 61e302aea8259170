"""Retention: raw door events older than the configured period are purged,
per-day counts kept, and each purge audited (docs/retention.md)."""
