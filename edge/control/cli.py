"""`cloudphone admin ...`: operator commands that talk to the control-plane store directly."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from cloudphone.edge.control.auth import issue_admin_token
from cloudphone.edge.control.config import ControlConfig
from cloudphone.edge.control.sqlite_store import SQLiteStore


def add_admin_parser(sub: argparse._SubParsersAction) -> None:
    """Add `admin` to a CLI's sub-commands (the edge's `cloudphone` command calls this)."""
    admin = sub.add_parser("admin", help="control-plane administration")
    cmds = admin.add_subparsers(dest="admin_command", required=True)
    token = cmds.add_parser("token", help="issue a new admin API token (replaces the old one)")
    token.add_argument("--db", default=ControlConfig().db_path, help="control-plane database")
    admin.set_defaults(func=run_admin)


async def _token(db: str) -> str:
    store = SQLiteStore(db)
    await store.open()
    try:
        return await issue_admin_token(store)
    finally:
        await store.close()


def run_admin(args: argparse.Namespace) -> int:
    if args.admin_command == "token":
        token = asyncio.run(_token(args.db))
        print(token)
        print(
            f"# stored (hashed) in {args.db}; send it as 'Authorization: Bearer <token>'",
            file=sys.stderr,
        )
        return 0
    return 2


def admin_main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: `python -m cloudphone.edge.control.cli admin token --db ...`."""
    parser = argparse.ArgumentParser(prog="cloudphone")
    add_admin_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(admin_main())
