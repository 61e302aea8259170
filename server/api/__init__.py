"""HTTP API: ``params`` parses query strings (pure), ``queries`` reads the
database (sync, run in a thread), ``routes`` are the aiohttp handlers."""
