"""What every HTTP slice of the server shares, and nothing slice-specific:
the request errors and their JSON shape (``errors``), answers and body
reading (``http``), bounded path ids and JSON bodies (``ids``, ``body``),
and write transactions (``transactions``). Slices import this package;
it imports no slice (docs/architecture.md has the map)."""
