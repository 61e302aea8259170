"""Schema (``models``), engine set-up (``engine``) and migrations (``migrate``)."""
