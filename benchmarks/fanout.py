"""Fan-out cost: CPU of one phone's edge with 1, 5 and 20 viewers, and what watermarks cost.

The edge runs as `cloudphone serve` in its own process (its CPU measured with psutil); the
viewers are aiortc peers in this process. One viewer (the owner) drags a finger over the Touch
app at 30 Hz so the screen changes every frame; the others only watch. Goal of issue 7:
20 viewers cost at most 1.5x the CPU of one, because the phone is encoded once and the packets
are only re-packetised per viewer.

Per-viewer watermarks break that on purpose: the mark is in the pixels, so each distinct viewer
identity is its own encode. The benchmark shows it with invite-link viewers (distinct labels)
under `watermark = "viewer"`, against `"shared"` (one mark, one encode) and `"off"`.

Writes benchmarks/results/fanout-<stamp>.json and .png and appends a row to RESULTS.md.
Run: `python -m benchmarks.fanout` (about three minutes on two cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from cloudphone.edge.client import PhoneClient
from cloudphone.edge.ice import configure_host_addresses

from benchmarks.common import append_results_row, results_dir, save_json
from benchmarks.stream import start_edge


async def _viewers(
    http: aiohttp.ClientSession, port: int, count: int, invites: bool
) -> list[PhoneClient]:
    """The owner, then `count - 1` watchers (invite links with distinct labels, or plain
    development-mode viewers that all share the owner's identity)."""
    ws = f"ws://127.0.0.1:{port}/ws"
    clients = [await PhoneClient.connect(http, ws, "phone-1", codec="h264", timeout=60)]
    for i in range(1, count):
        token = None
        if invites:
            url = f"http://127.0.0.1:{port}/edge/admin/phones/phone-1/invites"
            async with http.post(url, json={"kind": "view", "label": f"viewer-{i}"}) as r:
                token = (await r.json())["token"]
        clients.append(
            await PhoneClient.connect(
                http, ws, "phone-1", codec="h264", role="viewer", token=token, timeout=60
            )
        )
    return clients


async def run(count: int, watermark: str, seconds: float, size: str, config: str) -> dict[str, Any]:
    edge, port = start_edge(size, ["--config", config])
    try:
        proc = psutil.Process(edge.pid)
        async with aiohttp.ClientSession() as http:
            clients = await _viewers(http, port, count, invites=watermark != "off")
            owner = clients[0]
            await asyncio.gather(*(c.wait_for_frame(lambda f: True, 30) for c in clients))
            owner.tap(0.15, 0.24)  # open the Touch app
            await asyncio.sleep(1.5)
            owner.touch("down", 0.1, 0.5)
            received = [c.frames_received for c in clients]
            cpu0 = proc.cpu_times()
            t0 = time.monotonic()
            i = 0
            while time.monotonic() - t0 < seconds:
                owner.touch("move", 0.1 + (i % 80) / 100, 0.3 + (i % 50) / 100)
                i += 1
                await asyncio.sleep(1 / 30)
            elapsed = time.monotonic() - t0
            cpu1 = proc.cpu_times()
            fps = [
                (c.frames_received - r) / elapsed for c, r in zip(clients, received, strict=True)
            ]
            health = await (await http.get(f"http://127.0.0.1:{port}/healthz")).json()
            for c in clients:
                await c.close()
        pipeline = health["pipelines"]["phone-1"]
        return {
            "viewers": count,
            "watermark": watermark,
            "edge_cpu_percent": round(
                (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / elapsed * 100, 1
            ),
            "encoders": pipeline["encoders"],
            "fps_min": round(min(fps), 1),
            "fps_mean": round(sum(fps) / len(fps), 1),
            "loop_lag": health["loopLag"],
        }
    finally:
        edge.terminate()
        edge.wait(10)


def measure(count: int, watermark: str, seconds: float, size: str) -> dict[str, Any]:
    """One run on a fresh edge whose default policy has `watermark`."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "edge.toml"
        config.write_text(f'policy = {{ watermark = "{watermark}" }}\n')
        return asyncio.run(run(count, watermark, seconds, size, str(config)))


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    plain = [r for r in result["runs"] if r["watermark"] == "off"]
    axes[0].plot([r["viewers"] for r in plain], [r["edge_cpu_percent"] for r in plain], "o-")
    base = plain[0]["edge_cpu_percent"]
    axes[0].axhline(1.5 * base, color="red", linestyle="--", label="goal: 1.5x one viewer")
    axes[0].set_xlabel("viewers")
    axes[0].set_ylabel("edge CPU % of one core")
    axes[0].set_title("one encode fanned out (no watermark)")
    axes[0].legend()
    marked = [
        r
        for r in result["runs"]
        if r["watermark"] != "off" or r["viewers"] == result["mark_viewers"]
    ]
    labels = [f"{r['watermark']}\n{r['viewers']} viewers\n{r['encoders']} enc" for r in marked]
    axes[1].bar(labels, [r["edge_cpu_percent"] for r in marked], color="#3498db")
    axes[1].set_title("watermark cost")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="720x1280")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--viewers", default="1,5,20")
    parser.add_argument("--mark-viewers", type=int, default=5)
    args = parser.parse_args()
    configure_host_addresses(["127.0.0.1"])
    counts = [int(v) for v in args.viewers.split(",")]
    plan = [(n, "off") for n in counts]
    plan += [(args.mark_viewers, "shared"), (args.mark_viewers, "viewer")]
    if args.mark_viewers not in counts:
        plan.append((args.mark_viewers, "off"))
    runs = [measure(n, mark, args.seconds, args.size) for n, mark in plan]
    result = {
        "benchmark": "fanout",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "size": args.size,
        "cpus": os.cpu_count(),
        "load_avg_before": os.getloadavg(),
        "mark_viewers": args.mark_viewers,
        "runs": runs,
    }
    plain = {r["viewers"]: r for r in runs if r["watermark"] == "off"}
    one = plain[min(plain)]["edge_cpu_percent"]
    result["ratio_max_viewers_to_one"] = round(plain[max(plain)]["edge_cpu_percent"] / one, 2)
    out = results_dir()
    name = f"fanout-{time.strftime('%Y%m%d-%H%M%S')}"
    save_json(out / f"{name}.json", result)
    plot(result, out / f"{name}.png")
    cells = [
        f"{n} viewers {plain[n]['edge_cpu_percent']} % ({plain[n]['fps_min']} fps min)"
        for n in sorted(plain)
    ]
    cells.append(f"{max(plain)}/1 = {result['ratio_max_viewers_to_one']}x")
    for r in runs:
        if r["watermark"] != "off":
            cells.append(
                f"watermark {r['watermark']} x{r['viewers']}: {r['edge_cpu_percent']} %, "
                f"{r['encoders']} encodes"
            )
    append_results_row(
        "fanout",
        f"{args.size} h264, owner dragging at 30 Hz",
        "; ".join(cells),
        f"results/{name}.json",
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
