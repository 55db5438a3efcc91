"""Android passthrough: edge CPU per viewer, and the latency the edge adds (packet in -> RTP out).

Three processes so that only the edge is measured:

* device: the fake adb server + fake scrcpy-server (tests/fakes), encoding 720x1280 H.264 with
  libx264 the way a phone's MediaCodec would hand it over;
* edge: the real app (pipeline, aiortc senders) with one `AndroidGuest`; its own CPU time is
  read with `time.process_time()` (all its threads) over a fixed window per viewer count;
* viewers: N real aiortc `PhoneClient`s decoding the stream.

Latency: the guest stamps each access unit when it has been read whole from the adb socket
(`EncodedChunk.captured_at`); each session's SRTP `protect` is wrapped to note when the first
and the last (marker) RTP packet of that access unit leave, just before SRTP and the socket.

Run: `.venv/bin/python -m benchmarks.android_passthrough [--viewers 1,2,4] [--window 8]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .common import append_results_row, results_dir, save_json

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- device process


def _device_main(conn: Any, jar_dir: str, width: int, height: int, fps: int) -> None:
    sys.path.insert(0, str(ROOT))

    async def main() -> None:
        from tests.fakes.adb_server import FakeAdbServer
        from tests.fakes.scrcpy_device import add_phone

        adb = await FakeAdbServer().start()
        _, options = add_phone(
            adb, Path(jar_dir), "bench-phone", width=width, height=height, fps=fps
        )
        options["max_size"] = max(width, height)
        options["bit_rate"] = 4_000_000
        conn.send(options)
        await asyncio.to_thread(conn.recv)  # "stop"
        await adb.close()

    asyncio.run(main())


# ---------------------------------------------------------------- viewer process


def _viewers_main(conn: Any, ws_url: str, instance: str, count: int) -> None:
    sys.path.insert(0, str(ROOT))

    async def main() -> None:
        import aiohttp
        from cloudphone.edge.client import PhoneClient
        from cloudphone.edge.ice import configure_host_addresses

        # loopback only, like the edge: aioice skips 127.0.0.1 unless told, and would otherwise
        # gather on (and send to) this machine's other interfaces
        configure_host_addresses(["127.0.0.1"])

        async with aiohttp.ClientSession() as http:
            clients = [
                await PhoneClient.connect(http, ws_url, instance, codec="h264")
                for _ in range(count)
            ]
            conn.send("connected")
            await asyncio.to_thread(conn.recv)  # "stop"
            conn.send([c.frames_received for c in clients])
            for c in clients:
                await c.close()

    asyncio.run(main())


# ---------------------------------------------------------------- edge (this process)


class RtpProbe:
    """Times access units from the adb socket to RTP out, at each session's SRTP protection:
    both send paths (direct from the pipeline's publish, or aiortc's queued one) protect every
    RTP packet just before it goes to the socket."""

    def __init__(self) -> None:
        self.first_ms: list[float] = []
        self.last_ms: list[float] = []
        self.recording = False
        self._hooked: set[int] = set()

    def hook(self, sessions: Any) -> None:
        for session in sessions:
            if id(session) in self._hooked:
                continue
            srtp = session.peer_connection.getSenders()[0].transport._tx_srtp
            track = session.track
            # the access unit being written: set while the pipeline delivers it (direct path);
            # otherwise the one aiortc last pulled (queued path)
            delivering: list[Any] = [None]
            deliver = track.deliver

            def tracked_deliver(item: Any, _deliver: Any = deliver, _at: list[Any] = delivering):
                _at[0] = item
                try:
                    _deliver(item)
                finally:
                    _at[0] = None

            track.deliver = tracked_deliver
            seen: set[float] = set()

            def protect(
                data: bytes,
                _orig: Any = srtp.protect,
                _track: Any = track,
                _at: list[Any] = delivering,
                _seen: set[float] = seen,
                probe: RtpProbe = self,
            ) -> bytes:
                packet = _at[0] or _track.last_packet
                if probe.recording and packet is not None and len(data) > 12:
                    now = time.monotonic()
                    key = packet.captured_at  # unique per access unit
                    if key not in _seen:
                        _seen.add(key)
                        probe.first_ms.append((now - packet.captured_at) * 1000)
                        if len(_seen) > 512:
                            _seen.clear()
                            _seen.add(key)
                    if data[1] & 0x80:  # marker: last packet of the access unit
                        probe.last_ms.append((now - packet.captured_at) * 1000)
                return _orig(data)

            srtp.protect = protect
            self._hooked.add(id(session))


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": _pct(values, 0.5),
        "p95": _pct(values, 0.95),
        "p99": _pct(values, 0.99),
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def run(
    viewer_counts: list[int], window: float, width: int, height: int, fps: int
) -> dict[str, Any]:
    from aiohttp import web
    from cloudphone.edge.app import NODE, POOL, create_app
    from cloudphone.edge.config import load_config
    from cloudphone.vm.android.guest import AndroidGuest
    from cloudphone.vm.pool import GuestSpec

    ctx = mp.get_context("spawn")
    jar_dir = tempfile.mkdtemp(prefix="android-bench-")
    dev_conn, dev_child = ctx.Pipe()
    device = ctx.Process(
        target=_device_main, args=(dev_child, jar_dir, width, height, fps), daemon=True
    )
    device.start()
    options = await asyncio.to_thread(dev_conn.recv)

    config = load_config(environ={}, overrides={"phones": 0, "ice_host_addresses": ["127.0.0.1"]})
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ws_url = f"http://127.0.0.1:{port}/ws"
    pool, node = app[POOL], app[NODE]
    guest = await pool.create("bench", GuestSpec("android", options=options))
    assert isinstance(guest, AndroidGuest)
    pipeline = node.pipeline("bench")
    probe = RtpProbe()

    async def measure(label: str) -> dict[str, Any]:
        await asyncio.sleep(2.0)  # warm up
        packets0 = guest.packets_in
        cpu0, wall0 = time.process_time(), time.monotonic()
        probe.recording = True
        await asyncio.sleep(window)
        probe.recording = False
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        return {
            "label": label,
            "cpu_percent": round(100 * cpu / wall, 2),
            "packets_in_per_s": round((guest.packets_in - packets0) / wall, 1),
        }

    steps = [await measure("0 viewers")]
    steps[0]["viewers"] = 0
    for count in viewer_counts:
        parent, child = ctx.Pipe()
        viewers = ctx.Process(
            target=_viewers_main, args=(child, ws_url, "bench", count), daemon=True
        )
        viewers.start()
        assert await asyncio.to_thread(parent.recv) == "connected"
        probe.hook(node.sessions.values())
        step = await measure(f"{count} viewers")
        parent.send("stop")
        frames = await asyncio.to_thread(parent.recv)
        await asyncio.to_thread(viewers.join, 20)
        step.update(
            viewers=count, frames_per_viewer=frames, encoders_created=pipeline.encoders_created
        )
        steps.append(step)
        await asyncio.sleep(1.0)

    await pool.close()
    await runner.cleanup()
    dev_conn.send("stop")
    await asyncio.to_thread(device.join, 10)

    base = steps[0]["cpu_percent"]
    per_viewer = [(s["cpu_percent"] - base) / s["viewers"] for s in steps[1:] if s["viewers"]]
    return {
        "benchmark": "android_passthrough",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "stream": {"width": width, "height": height, "fps": fps, "bit_rate": options["bit_rate"]},
        "window_s": window,
        "steps": steps,
        "edge_cpu_percent_no_viewer": base,
        "edge_cpu_percent_per_viewer": round(statistics.median(per_viewer), 2)
        if per_viewer
        else None,
        "edge_encodes": pipeline.encoders_created,
        "latency_packet_in_to_first_rtp_ms": _summary(probe.first_ms),
        "latency_packet_in_to_last_rtp_ms": _summary(probe.last_ms),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", default="1,2,4", help="viewer counts to step through")
    parser.add_argument("--window", type=float, default=8.0, help="seconds measured per step")
    parser.add_argument("--size", default="720x1280")
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    counts = [int(v) for v in args.viewers.split(",") if v]
    result = asyncio.run(run(counts, args.window, width, height, args.fps))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = results_dir() / f"android_passthrough-{stamp}.json"
    save_json(out, result)
    first, last = (
        result["latency_packet_in_to_first_rtp_ms"],
        result["latency_packet_in_to_last_rtp_ms"],
    )
    append_results_row(
        "android_passthrough",
        f"{width}x{height}@{args.fps} H.264 from a fake scrcpy-server, viewers {args.viewers}",
        f"edge CPU {result['edge_cpu_percent_no_viewer']} % streaming with no viewer +"
        f" {result['edge_cpu_percent_per_viewer']} %/viewer (median),"
        f" {result['edge_encodes']} edge encodes; packet in -> first RTP p50/p95/p99"
        f" {first['p50']}/{first['p95']}/{first['p99']} ms, -> last RTP"
        f" {last['p50']}/{last['p95']}/{last['p99']} ms",
        f"results/{out.name}",
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
