"""The rentgate server for the patrol benchmark: what ``rentgate server`` runs
(same application, same logging, same ``web.run_app``), but built with
``make_app(settings, ingest=False)`` so it needs no MQTT broker: the pages
and the API alone, which is all a coordinator's phone talks to.

    python -m bench.patrol_server --port N    (settings from RENTGATE_* variables)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

log = logging.getLogger("bench.patrol_server")


def main(argv: list[str] | None = None) -> int:
    from aiohttp import web

    from rentgate import logs
    from server.app import make_app
    from server.settings import load_settings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log-level", default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="worker threads of asyncio.to_thread (default: Python's, min(32, CPUs + 4))")
    args = p.parse_args(argv)
    logs.setup(args.log_level)
    settings = load_settings(http_host=args.host, http_port=args.port)
    app = make_app(settings, ingest=False)
    if args.threads is not None:
        app.on_startup.append(functools.partial(_set_executor, threads=args.threads))
    web.run_app(app, host=settings.http_host, port=settings.http_port,
                print=lambda text: log.info("%s", text.strip()), shutdown_timeout=10)
    return 0


async def _set_executor(_app: object, *, threads: int) -> None:
    """An experiment, not a setting of the server: fewer threads share the
    GIL with fewer others, so each page's own time shrinks while more
    requests wait for a thread."""
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix="bench"))
    log.info("asyncio.to_thread runs on %s threads", threads)


if __name__ == "__main__":
    sys.exit(main())
