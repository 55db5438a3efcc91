"""Encode cost, delivered frame rate and edge CPU of one streaming phone, per codec.

Two parts, both on the same run so the numbers compare:
1. Encoder micro-benchmark: the simulated phone's real frames (a finger dragging across the
   Touch app) converted and encoded at the given size, ms per frame (median, p95).
2. End to end: `cloudphone serve` in a subprocess (its CPU measured with psutil), a Python aiortc
   viewer here dragging a finger at 60 Hz for `--seconds`; frames/s delivered, edge CPU %, edge
   event-loop lag.

Writes benchmarks/results/stream-<stamp>.json and .png, and appends a row to RESULTS.md.
Run: `python -m benchmarks.stream` (or `make bench`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil
from cloudphone.codecs import EncoderConfig, create_encoder
from cloudphone.edge.client import PhoneClient
from cloudphone.edge.ice import configure_host_addresses
from cloudphone.vm.guest import TouchEvent
from cloudphone.vm.simulated.ui import PhoneUI

from .common import append_results_row, drag, free_port, results_dir, save_json


def encoder_costs(codec: str, width: int, height: int, frames: int) -> dict[str, float]:
    ui = PhoneUI(width, height)
    ui.open("Touch")
    encoder = create_encoder(EncoderConfig(codec, width, height, 30, 2_500_000))
    from cloudphone.vm.guest import RawFrame

    times: list[float] = []
    sizes: list[int] = []
    ui.apply(TouchEvent("down", 0, 0.1, 0.2))
    for i in range(frames + 10):
        ui.apply(TouchEvent("move", 0, 0.1 + (i % 80) / 100, 0.2 + (i % 60) / 100))
        image = ui.render(i, i, True)
        frame = RawFrame(image, "rgb24", time.monotonic(), i)
        started = time.perf_counter()
        packets = encoder.encode(frame, i * 3000, force_keyframe=False)
        elapsed = (time.perf_counter() - started) * 1000
        if i >= 10:  # skip the first IDR and x264's warm-up
            times.append(elapsed)
            sizes.append(sum(len(p.data) for p in packets))
    encoder.close()
    return {
        "ms_p50": round(float(np.percentile(times, 50)), 2),
        "ms_p95": round(float(np.percentile(times, 95)), 2),
        "kbytes_per_frame": round(statistics.mean(sizes) / 1000, 1),
    }


def start_edge(size: str, extra: list[str] | None = None) -> tuple[subprocess.Popen[str], int]:
    """`cloudphone serve` in its own process, so its CPU can be measured alone."""
    port = free_port()
    edge = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudphone.edge.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--size",
            size,
            "--ice-host-address",
            "127.0.0.1",
            "--stamp",
            "--log-level",
            "warning",
            *(extra or []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert edge.stdout is not None
    for line in edge.stdout:  # log lines may come first; "cloudphone edge on ..." = listening
        if line.startswith("cloudphone edge on"):
            break
    return edge, port


async def stream_run(
    edge: subprocess.Popen[str], port: int, codec: str, seconds: float
) -> dict[str, Any]:
    try:
        proc = psutil.Process(edge.pid)
        async with aiohttp.ClientSession() as http:
            client = await PhoneClient.connect(
                http, f"ws://127.0.0.1:{port}/ws", "phone-1", codec=codec
            )
            await client.wait_for_frame(lambda f: True)
            client.tap(0.15, 0.24)  # open the Touch app
            await asyncio.sleep(1.0)
            client.touch("down", 0.1, 0.5)
            await http.get(f"http://127.0.0.1:{port}/healthz?reset=1")
            start_frames = client.frames_received
            cpu0 = proc.cpu_times()
            i, elapsed = await drag(client, seconds, hz=60)
            cpu1 = proc.cpu_times()
            frames = client.frames_received - start_frames
            health = await (await http.get(f"http://127.0.0.1:{port}/healthz")).json()
            await client.close()
        cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / elapsed * 100
        stream = health["pipelines"]["phone-1"]["streams"].get(codec, {})
        return {
            "fps_delivered": round(frames / elapsed, 1),
            "edge_cpu_percent": round(cpu, 1),
            "server_encode_ms_ewma": stream.get("encodeMs"),
            "loop_lag": health["loopLag"],
            "touch_messages": i,
        }
    finally:
        edge.terminate()


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codecs = list(result["encode"])
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    axes[0].bar(
        codecs, [result["encode"][c]["ms_p50"] for c in codecs], color=["#3498db", "#e67e22"]
    )
    axes[0].errorbar(
        codecs,
        [result["encode"][c]["ms_p50"] for c in codecs],
        yerr=[
            [0] * len(codecs),
            [result["encode"][c]["ms_p95"] - result["encode"][c]["ms_p50"] for c in codecs],
        ],
        fmt="none",
        color="black",
        capsize=4,
    )
    axes[0].set_title(f"convert+encode ms/frame {result['size']}\n(bar p50, whisker p95)")
    axes[1].bar(
        codecs, [result["stream"][c]["fps_delivered"] for c in codecs], color=["#3498db", "#e67e22"]
    )
    axes[1].set_title("frames/s delivered")
    axes[2].bar(
        codecs,
        [result["stream"][c]["edge_cpu_percent"] for c in codecs],
        color=["#3498db", "#e67e22"],
    )
    axes[2].set_title("edge CPU % (of one core)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="720x1280")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--codecs", default="h264,vp8")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    codecs = args.codecs.split(",")
    configure_host_addresses(["127.0.0.1"])
    result: dict[str, Any] = {
        "benchmark": "stream",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "size": args.size,
        "cpus": os.cpu_count(),
        "encode": {c: encoder_costs(c, width, height, args.frames) for c in codecs},
        "stream": {},
    }
    for codec in codecs:
        edge, port = start_edge(args.size)
        try:
            result["stream"][codec] = asyncio.run(stream_run(edge, port, codec, args.seconds))
        finally:
            edge.terminate()
            edge.wait(10)
    out = results_dir()
    name = f"stream-{time.strftime('%Y%m%d-%H%M%S')}"
    save_json(out / f"{name}.json", result)
    plot(result, out / f"{name}.png")
    cells = []
    for c in codecs:
        e, s = result["encode"][c], result["stream"][c]
        cells.append(
            f"{c}: encode {e['ms_p50']}/{e['ms_p95']} ms p50/p95, {s['fps_delivered']} fps, "
            f"edge CPU {s['edge_cpu_percent']} %, loop lag p99 {s['loop_lag'].get('p99_ms')} ms"
        )
    append_results_row("stream", args.size, "; ".join(cells), f"results/{name}.json")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
