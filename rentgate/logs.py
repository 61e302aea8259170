"""Logging set-up shared by every command: human lines on standard error.

Standard output is kept for results (``--json`` prints one object as its last line).
"""

from __future__ import annotations

import logging
import os
import sys


def setup(level: str | None = None) -> None:
    name = (level or os.environ.get("RENTGATE_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, name, logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # amqtt and paho are chatty at INFO about every client.
    for noisy in ("amqtt", "transitions", "alembic.runtime.migration", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
