"""The public-security cross-check API: police clients and officers,
purpose-bound look-ups, batch cross-checks, events and watches
(docs/police.md)."""
