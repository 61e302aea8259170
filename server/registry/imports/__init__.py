"""Importing existing records (addresses, then registrations) from CSV and
Excel files: read, map headers, validate every row, then apply all rows in one
transaction or none (docs/import.md)."""
