"""Prints docs/auth.md's route table for the whole application, or writes
it into docs/auth.md (``--write``). It lives beside server/app.py because
it builds the application; server/auth/table.py only formats."""

from __future__ import annotations

import argparse
import sys

from aiohttp import web

from server.app import make_app
from server.auth.table import DOC, markdown, with_table
from server.settings import ServerSettings


def application() -> web.Application:
    """The full route table; nothing is started or connected."""
    return make_app(ServerSettings(database_url="sqlite://"), ingest=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="update docs/auth.md in place")
    args = parser.parse_args(argv)
    table = markdown(application())
    if args.write:
        DOC.write_text(with_table(DOC.read_text(encoding="utf-8"), table), encoding="utf-8")
        print(f"updated {DOC}", file=sys.stderr)
    else:
        print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
