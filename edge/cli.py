"""`cloudphone` command line: `serve` runs the edge; options map 1:1 onto `EdgeConfig`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web
from cloudphone.edge.app import NODE, create_app
from cloudphone.edge.config import ConfigError, EdgeConfig, load_config
from cloudphone.edge.control.cli import add_admin_parser

log = logging.getLogger("cloudphone")


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the edge with its phones and print the URL to open")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int)
    p.add_argument("--phones", type=int, help="number of phones to create")
    p.add_argument("--size", help="screen size WxH, e.g. 720x1280")
    p.add_argument("--fps", type=int)
    p.add_argument("--codec", choices=("auto", "h264", "vp8"))
    p.add_argument("--guest", help="guest kind of the phones (simulated, qemu)")
    p.add_argument(
        "--qemu-binary", help="QEMU for qemu phones (default: qemu-system-<arch> on PATH)"
    )
    p.add_argument("--stamp", action="store_const", const=True, help="draw the latency probe")
    p.add_argument("--bitrate", type=int)
    p.add_argument("--min-bitrate", type=int)
    p.add_argument("--max-bitrate", type=int)
    p.add_argument(
        "--ice-server", action="append", dest="ice_servers", help="stun:/turn: URL (repeatable)"
    )
    p.add_argument(
        "--turn-url", action="append", dest="turn_urls", help="TURN URL with REST credentials"
    )
    p.add_argument("--turn-secret")
    p.add_argument(
        "--ice-host-address",
        action="append",
        dest="ice_host_addresses",
        help="address to gather ICE host candidates on ('auto' = all interfaces)",
    )
    p.add_argument("--ice-announce", action="append", help="local=public address for a 1:1 NAT")
    p.add_argument(
        "--ice-relay-only",
        action="store_const",
        const=True,
        help="send media only through the TURN servers (offer relayed candidates only)",
    )
    p.add_argument("--admin-token", help="token required to connect (disables open dev access)")
    p.add_argument("--control-db", help="SQLite file of the control plane; enables /api/v1")
    p.add_argument("--control-config", help="TOML file: regions, zones, flavors, billing rules")
    p.add_argument(
        "--demo",
        action="store_const",
        const=True,
        help="with --control-db: seed a demo admin and user and print how to log in",
    )
    p.add_argument("--no-dev-mode", dest="dev_mode", action="store_const", const=False)
    p.add_argument(
        "--no-low-latency",
        dest="low_latency",
        action="store_const",
        const=False,
        help="let browsers smooth playback instead of rendering frames on arrival",
    )
    p.add_argument(
        "--playout-delay-max",
        dest="playout_delay_max_ms",
        type=int,
        help="max of the RTP playout-delay hint in ms (min is always 0; default 100)",
    )
    p.add_argument("--log-level")


BENCHMARKS = ("latency", "stream", "qemu_latency")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return bench(argv[1:])
    parser = argparse.ArgumentParser(prog="cloudphone", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    add_admin_parser(sub)
    sub.add_parser("bench", help=f"run a benchmark: {', '.join(BENCHMARKS)} (--help for each)")
    args = parser.parse_args(argv)
    if args.command == "admin":
        return int(args.func(args))
    if args.command == "serve":
        overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
        try:
            config = load_config(args.config, overrides=overrides)
        except ConfigError as exc:
            print(f"cloudphone: configuration error: {exc}", file=sys.stderr)
            return 2
        return serve(config)
    return 2  # pragma: no cover - argparse enforces a command


def bench(argv: list[str]) -> int:
    """`cloudphone bench NAME [options]`: the benchmark's own command line (needs '.[test]')."""
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: cloudphone bench {{{','.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(f"cloudphone.benchmarks.{argv[0]}")
    sys.argv = [f"cloudphone bench {argv[0]}", *argv[1:]]
    module.main()
    return 0


def serve(config: EdgeConfig) -> int:
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        loop_name = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.Runner()
        loop_name = "asyncio"
    with runner:
        return runner.run(_serve(config, loop_name))


async def _serve(config: EdgeConfig, loop_name: str) -> int:
    app = create_app(config)
    app_runner = web.AppRunner(app, handle_signals=False)
    await app_runner.setup()
    site = web.TCPSite(app_runner, config.host, config.port)
    try:
        await site.start()
    except OSError as exc:
        print(f"cloudphone: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        await app_runner.cleanup()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    node = app[NODE]
    print(f"cloudphone edge on {loop_name}: {len(node.pipelines)} phone(s)", flush=True)
    for instance in node.pipelines:
        print(f"  open  http://{host}:{config.port}/phone/{instance}", flush=True)
    if config.dev_mode:
        print("  (development mode: anyone who can reach this port can use the phones)", flush=True)
    await stop.wait()
    print("cloudphone: shutting down", flush=True)
    await app_runner.cleanup()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
