"""Touch-to-photon as a user sees it: a real Chromium, real touches, the stamp on screen.

For each codec and run: `cloudphone serve --stamp` in a subprocess (CPU measured with psutil),
headless Debian Chromium opens the player with the probe (`?probe=1`), opens the Touch app, then
taps N times at irregular intervals with Playwright's touchscreen (CDP touch events). The page
records when each input message left (`performance.now()`), and for every displayed frame
(`requestVideoFrameCallback`) the stamp's input sequence and `expectedDisplayTime`.

- touch-to-photon: input message sent -> expected display time of the first frame whose stamp
  carries that input (browser clock throughout);
- glass-to-glass: frame drawn by the phone (wall clock, `/edge/instances/<id>/frame-log`) ->
  expected display time (`performance.timeOrigin` + it, same machine, same clock);
- decode (rVFC processingDuration), jitter-buffer delay (getStats), fps, drops, edge CPU.

`--client python` measures with an aiortc viewer instead, for machines without a browser; aiortc's
receiver holds each frame until the next frame's first packet arrives, so its numbers include up
to one frame interval a browser does not add (reported as `aiortc_hold_note`).

Writes benchmarks/results/latency-<stamp>.json and .png, appends rows to RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import time
from typing import Any

import aiohttp
import numpy as np
import psutil

from .common import append_results_row, results_dir, save_json
from .stream import start_edge

TARGETS = {"t2p_p50": 25.0, "t2p_p95": 45.0, "g2g_p50": 20.0}

# Where the milliseconds of one touch go: (stage, from, to) over the page's and the edge's
# timestamps (one machine, one wall clock). The first frame showing the touch is followed.
STAGES = (
    ("input: page -> phone (data channel)", "pageSent", "inputAt"),
    ("wait for render slot", "inputAt", "renderStart"),
    ("render", "renderStart", "renderEnd"),
    ("hand-off to encoder", "renderEnd", "encodeStart"),
    ("convert + encode", "encodeStart", "encodeEnd"),
    ("encoder -> event loop", "encodeEnd", "published"),
    ("loop -> sent (packetise, SRTP, socket)", "published", "sent"),
    ("network + reassembly", "sent", "receive"),
    ("decode + compositor", "receive", "display"),
)


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    data = np.asarray(values, float)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(data, 50)), 1),
        "p95": round(float(np.percentile(data, 95)), 1),
        "p99": round(float(np.percentile(data, 99)), 1),
        "mean": round(float(data.mean()), 1),
    }


async def browser_run(
    port: int, edge_pid: int, codec: str, touches: int, seed: int, viewport: str = "420x860"
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from .browser import launch

    rng = random.Random(seed)
    proc = psutil.Process(edge_pid)
    async with async_playwright() as p:
        browser = await launch(p)
        width, height = (int(v) for v in viewport.split("x"))
        context = await browser.new_context(
            viewport={"width": width, "height": height}, has_touch=True
        )
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{port}/phone/phone-1?probe=1&codec={codec}")
        await page.wait_for_function(
            "window.cloudphone.connected && window.cloudphoneProbe.framesSeen > 0", timeout=20000
        )
        box = await page.locator("#video").bounding_box()
        assert box is not None

        def to_page(x: float, y: float) -> tuple[float, float]:
            scale = min(box["width"] / 720, box["height"] / 1280)
            w, h = 720 * scale, 1280 * scale
            return box["x"] + (box["width"] - w) / 2 + x * w, box["y"] + (
                box["height"] - h
            ) / 2 + y * h

        await page.touchscreen.tap(*to_page(108 / 720, 306 / 1280))  # the Touch app
        await asyncio.sleep(1.0)
        stats_before = await _inbound_stats(page)
        cpu0, t0 = proc.cpu_times(), time.monotonic()
        down_seqs = []
        for _ in range(touches):
            seq_before = await page.evaluate("window.cloudphone.seq")
            await page.touchscreen.tap(*to_page(rng.uniform(0.1, 0.9), rng.uniform(0.2, 0.85)))
            down_seqs.append(seq_before + 1)
            await asyncio.sleep(rng.uniform(0.05, 0.15))
        await asyncio.sleep(1.0)
        elapsed = time.monotonic() - t0
        cpu1 = proc.cpu_times()
        stats_after = await _inbound_stats(page)
        probe = await page.evaluate(
            "({sent: window.cloudphoneProbe.sent, first: window.cloudphoneProbe.firstSeen,"
            " frames: window.cloudphoneProbe.frames, origin: window.cloudphoneProbe.timeOrigin,"
            " unreadable: window.cloudphoneProbe.unreadable, codec: window.cloudphone.codec})"
        )
        await browser.close()
    async with aiohttp.ClientSession() as http:
        log = await (
            await http.get(f"http://127.0.0.1:{port}/edge/instances/phone-1/frame-log")
        ).json()
        health = await (await http.get(f"http://127.0.0.1:{port}/healthz")).json()

    t2p = []
    for seq in down_seqs:
        sent, seen = probe["sent"].get(str(seq)), probe["first"].get(str(seq))
        if sent is not None and seen is not None:
            t2p.append(seen["display"] - sent)
    drawn: dict[int, float] = {}
    by_counter: dict[int, dict[str, Any]] = {}
    for entry in log["frames"]:
        drawn[entry["frame"]] = entry["renderEnd"] * 1000.0
        by_counter[entry["frame"]] = entry
    stages: dict[str, list[float]] = {name: [] for name, _, _ in STAGES}
    origin = probe["origin"]
    for seq in down_seqs:
        sent, seen = probe["sent"].get(str(seq)), probe["first"].get(str(seq))
        server = by_counter.get(seen["frame"]) if seen else None
        if sent is None or seen is None or server is None or "sent" not in server:
            continue
        times = {
            "pageSent": (origin + sent) / 1000.0,
            "display": (origin + seen["display"]) / 1000.0,
            "receive": (origin + seen["receive"]) / 1000.0 if seen.get("receive") else None,
            **server,
        }
        for name, start, end in STAGES:
            if times.get(start) is not None and times.get(end) is not None:
                stages[name].append((times[end] - times[start]) * 1000.0)
    g2g, decode = [], []
    window = [f for f in probe["frames"] if f["display"] is not None]
    for frame in window:
        if frame["frame"] in drawn:
            g2g.append(probe["origin"] + frame["display"] - drawn[frame["frame"]])
        if frame.get("processing") is not None:
            decode.append(frame["processing"] * 1000.0)
    frames_delta = stats_after["framesDecoded"] - stats_before["framesDecoded"]
    jitter_delta = stats_after["jitterBufferDelay"] - stats_before["jitterBufferDelay"]
    emitted_delta = (
        stats_after["jitterBufferEmittedCount"] - stats_before["jitterBufferEmittedCount"]
    )
    return {
        "codec": probe["codec"],
        "touches": touches,
        "matched": len(t2p),
        "touch_to_photon_ms": percentiles(t2p),
        "glass_to_glass_ms": percentiles([v for v in g2g if -50 < v < 2000]),
        "decode_ms": percentiles(decode),
        "jitter_buffer_ms": round(1000 * jitter_delta / emitted_delta, 1)
        if emitted_delta
        else None,
        "fps": round(frames_delta / elapsed, 1),
        "frames_dropped": stats_after["framesDropped"] - stats_before["framesDropped"],
        "unreadable_frames": probe["unreadable"],
        "edge_cpu_percent": round(
            (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / elapsed * 100, 1
        ),
        "edge_loop_lag": health["loopLag"],
        "stages_ms_p50": {k: round(float(np.median(v)), 2) for k, v in stages.items() if v},
        "raw_touch_to_photon_ms": [round(v, 2) for v in t2p],
    }


async def _inbound_stats(page: Any) -> dict[str, float]:
    return await page.evaluate(
        """async () => {
            const report = await window.cloudphone.pc.getStats();
            let out = null;
            report.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") out = s; });
            return {framesDecoded: out.framesDecoded || 0, framesDropped: out.framesDropped || 0,
                    jitterBufferDelay: out.jitterBufferDelay || 0,
                    jitterBufferEmittedCount: out.jitterBufferEmittedCount || 0};
        }"""
    )


async def python_run(
    port: int, edge_pid: int, codec: str, touches: int, seed: int, viewport: str = ""
) -> dict[str, Any]:
    from cloudphone.edge.client import PhoneClient, ReceivedFrame

    rng = random.Random(seed)
    proc = psutil.Process(edge_pid)
    async with aiohttp.ClientSession() as http:
        client = await PhoneClient.connect(
            http, f"ws://127.0.0.1:{port}/ws", "phone-1", codec=codec
        )
        await client.wait_for_frame(lambda f: f.stamp is not None)
        client.tap(108 / 720, 306 / 1280)
        await asyncio.sleep(1.0)
        t2p = []
        cpu0, t0 = proc.cpu_times(), time.monotonic()
        for _ in range(touches):
            sent = time.monotonic()
            seq = client.touch("down", rng.uniform(0.1, 0.9), rng.uniform(0.2, 0.85))

            def shows(frame: ReceivedFrame, seq: int = seq) -> bool:
                return frame.stamp is not None and frame.stamp.input_seq >= seq

            frame = await client.wait_for_frame(shows)
            t2p.append((frame.received_at - sent) * 1000)
            client.touch("up", 0.5, 0.5)
            await asyncio.sleep(rng.uniform(0.05, 0.15))
        elapsed = time.monotonic() - t0
        cpu1 = proc.cpu_times()
        await client.close()
    return {
        "codec": codec,
        "touches": touches,
        "matched": len(t2p),
        "touch_to_photon_ms": percentiles(t2p),
        "edge_cpu_percent": round(
            (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / elapsed * 100, 1
        ),
        "aiortc_hold_note": (
            "includes aiortc's receiver holding each frame until the next frame's first packet"
        ),
    }


def plot(result: dict[str, Any], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 3.8))
    for codec, runs in result["runs"].items():
        values = np.concatenate(
            [r["raw_touch_to_photon_ms"] for r in runs if r.get("raw_touch_to_photon_ms")] or [[]]
        )
        if not len(values):
            continue
        hist.hist(values, bins=40, alpha=0.55, label=codec)
        xs = np.sort(values)
        cdf.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=codec)
    for axis in (hist, cdf):
        axis.axvline(TARGETS["t2p_p50"], color="green", linestyle="--", linewidth=1)
        axis.axvline(TARGETS["t2p_p95"], color="red", linestyle="--", linewidth=1)
        axis.set_xlabel("touch-to-photon (ms)")
        axis.legend()
    hist.set_title("histogram")
    cdf.set_title(f"CDF ({result['size']}, {result['client']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--touches", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--codecs", default="h264,vp8")
    parser.add_argument("--size", default="720x1280")
    parser.add_argument("--client", choices=("browser", "python"), default="browser")
    parser.add_argument("--note", default="", help="what changed, for RESULTS.md")
    parser.add_argument("--edge-args", default="", help="extra `cloudphone serve` options")
    parser.add_argument(
        "--viewport",
        default="420x860",
        help="browser window WxH (a phone-sized default: the video is scaled down to fit)",
    )
    args = parser.parse_args()
    if args.client == "python":
        from cloudphone.edge.ice import configure_host_addresses

        configure_host_addresses(["127.0.0.1"])
    measure = browser_run if args.client == "browser" else python_run
    result: dict[str, Any] = {
        "benchmark": "latency",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "size": args.size,
        "client": args.client,
        "targets": TARGETS,
        "note": args.note,
        "runs": {},
    }
    for codec in args.codecs.split(","):
        result["runs"][codec] = []
        for run in range(args.runs):
            edge, port = start_edge(args.size, args.edge_args.split())
            try:
                outcome = asyncio.run(
                    measure(port, edge.pid, codec, args.touches, run, args.viewport)
                )
            finally:
                edge.terminate()
                try:
                    edge.wait(10)
                except subprocess.TimeoutExpired:
                    edge.kill()
            result["runs"][codec].append(outcome)
            summary = {k: v for k, v in outcome.items() if not k.startswith("raw")}
            print(json.dumps({"codec": codec, "run": run + 1, **summary}), flush=True)
    name = f"latency-{args.client}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = results_dir()
    save_json(out / f"{name}.json", result)
    plot(result, out / f"{name}.png")
    for codec, runs in result["runs"].items():
        t2p = "; ".join(
            f"{r['touch_to_photon_ms'].get('p50')}/{r['touch_to_photon_ms'].get('p95')}/{r['touch_to_photon_ms'].get('p99')}"
            for r in runs
        )
        g2g = ", ".join(str(r.get("glass_to_glass_ms", {}).get("p50", "-")) for r in runs)
        cpu = ", ".join(str(r["edge_cpu_percent"]) for r in runs)
        setup = (
            f"{codec} {args.size} {args.client} {args.touches} touches x{args.runs}, "
            f"viewport {args.viewport}"
        )
        note = f" ({args.note})" if args.note else ""
        append_results_row(
            "latency",
            setup,
            f"touch-to-photon p50/p95/p99 ms per run: {t2p}; glass-to-glass p50: {g2g}; "
            f"edge CPU %: {cpu}{note}",
            f"results/{name}.json",
        )


if __name__ == "__main__":
    main()
