"""A simulated district with ground truth, driving the real ingest path and
reconciliation engine (``rentgate sim district``): see docs/district-sim.md."""
