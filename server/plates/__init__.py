"""Door plates: signed tokens, the plates table, rendering and the
``rentgate plates`` command. Pure modules (tokens, layout) apart from I/O."""
