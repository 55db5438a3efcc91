"""Input-to-frame latency of a QEMU guest through the whole edge, per capture path.

For each capture path (D-Bus display, VNC with keepalive; optionally VNC without it) an edge is
started in this process with one recipe QEMU guest, and a Python aiortc viewer sends key
presses and taps over the `input` data channel at random intervals. Per input we record:

- **edge**: input sent by the viewer -> the encoded packet carrying that input's stamp leaves
  the pipeline for the viewer's track (data channel, input routing, QMP, guest draw, capture,
  convert, H.264 encode). This is the server side of touch-to-photon.
- **viewer**: input sent -> the decoded frame with that stamp at the aiortc viewer, minus the
  hold aiortc's receiver adds (it keeps a frame until the next frame's first packet arrives,
  FIELD-NOTES; an idle guest sends no next frame, so the benchmark asks the guest for a
  refresh right after the measured packet and subtracts the gap between the two packets).
- **boot**: QEMU spawn -> first stamped frame captured (boot-to-first-frame), and edge start ->
  first decoded frame at the viewer.

`--arch aarch64` measures the aarch64 recipe guest (`-machine virt`, virtio-gpu, all under TCG
on an x86 host) instead of the x86_64 one; `--qemu-binary
.cache/qemu-backports/usr/bin/qemu-system-x86_64` measures QEMU 10, whose taps go through
virtio-multitouch (QMP `mtt`) instead of virtio-tablet.

Writes benchmarks/results/qemu-latency-<stamp>.json and .png (CDFs per path) and appends one
row per path to benchmarks/RESULTS.md. Run: `python -m benchmarks.qemu_latency [--inputs 60]
[--arch aarch64] [--qemu-binary PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp.test_utils import TestServer
from cloudphone.codecs import EncodedPacket
from cloudphone.edge.app import NODE, POOL, create_app
from cloudphone.edge.client import PhoneClient, ReceivedFrame
from cloudphone.edge.config import load_config
from cloudphone.vm.qemu import QemuGuest
from cloudphone.vm.qemu.image import ARCHES, ensure_image

from .common import append_results_row, results_dir, save_json

PATHS: dict[str, dict[str, Any]] = {
    "dbus": {"capture": "dbus"},
    "vnc": {"capture": "vnc"},
    "vnc-poke-only": {"capture": "vnc", "keepalive": None},
}


@dataclass(eq=False)
class Probe:
    """A pipeline subscriber that timestamps packets by the input seq in their stamp."""

    guest: QemuGuest
    first_seen: dict[int, float] = field(default_factory=dict)
    packets: dict[int, EncodedPacket] = field(default_factory=dict)
    published: list[tuple[float, int]] = field(default_factory=list)
    waiting: int | None = None

    def deliver(self, item: EncodedPacket) -> None:
        now = time.monotonic()
        self.published.append((now, item.input_seq))
        self.first_seen.setdefault(item.input_seq, now)
        self.packets.setdefault(item.input_seq, item)
        if self.waiting is not None and item.input_seq >= self.waiting:
            self.waiting = None
            # flush aiortc's one-frame hold at the viewer: give it a next frame at once
            asyncio.get_running_loop().call_soon(self.guest.request_refresh)

    def next_packet_after(self, t: float) -> float | None:
        return next((when for when, _ in self.published if when > t), None)


def _carries(seq: int) -> Callable[[ReceivedFrame], bool]:
    return lambda f: f.stamp is not None and f.stamp.input_seq >= seq


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def measure_path(
    name: str, inputs: int, seed: int, arch: str, binary: str = ""
) -> dict[str, Any]:
    options = {"id": "phone-1", "kind": "qemu", "arch": arch, **PATHS[name]}
    if binary:
        options["binary"] = binary
    config = load_config(
        environ={},
        overrides={"ice_host_addresses": ["127.0.0.1"], "instances": [options], "phones": 1},
    )
    started = time.monotonic()
    server = TestServer(create_app(config), host="127.0.0.1", port=0)
    await server.start_server()  # boots the guest
    http = aiohttp.ClientSession()
    client: PhoneClient | None = None
    try:
        guest = server.app[POOL].get("phone-1")
        assert isinstance(guest, QemuGuest)
        pipeline = server.app[NODE].pipeline("phone-1")
        client = await PhoneClient.connect(
            http, str(server.make_url("/ws")), "phone-1", codec="h264"
        )
        probe = Probe(guest)
        pipeline.subscribe("h264", probe)
        await client.wait_for_frame(lambda f: f.stamp is not None, 30.0)
        first_view = time.monotonic() - started
        rng = random.Random(seed)
        rows: list[dict[str, Any]] = []
        letters = "abcdefghijklmnopqrstuvwxyz"
        for i in range(inputs):
            await asyncio.sleep(rng.uniform(0.08, 0.25))
            kind = "key" if i % 2 == 0 else "tap"
            sent = time.monotonic()
            if kind == "key":
                code = f"Key{letters[i % 26].upper()}"
                seq = client.send_input({"type": "key", "a": "press", "code": code})
            else:
                x, y = rng.uniform(0.1, 0.9), rng.uniform(0.4, 0.95)
                seq = client.touch("down" if i % 4 == 1 else "up", x, y)
            probe.waiting = seq
            frame = await client.wait_for_frame(_carries(seq), 10.0)
            edge_at = probe.first_seen.get(seq)
            shown = seq
            if edge_at is None:  # a later seq covered this one
                shown = min(s for s in probe.first_seen if s >= seq)
                edge_at = probe.first_seen[shown]
            packet = probe.packets[shown]
            follow = probe.next_packet_after(edge_at)
            hold = (follow - edge_at) if follow is not None else 0.0
            rows.append(
                {
                    "kind": kind,
                    "seq": seq,
                    "edge_ms": (edge_at - sent) * 1000,
                    # breakdown: guest + capture, then convert + encode (queue included)
                    "captured_ms": (packet.captured_at - sent) * 1000,
                    "encoded_ms": (packet.encoded_at - packet.captured_at) * 1000,
                    "viewer_ms": (frame.received_at - sent - hold) * 1000,
                    "viewer_raw_ms": (frame.received_at - sent) * 1000,
                }
            )
        pipeline.unsubscribe("h264", probe)
        edge_ms = [r["edge_ms"] for r in rows]
        viewer_ms = [r["viewer_ms"] for r in rows]
        return {
            "path": name,
            "arch": arch,
            "options": PATHS[name],
            "binary": binary or f"qemu-system-{arch}",
            "multitouch": guest.config.multitouch,
            "inputs": inputs,
            "boot_to_first_frame_s": guest.boot_to_first_frame,
            "edge_start_to_first_viewer_frame_s": first_view,
            "edge_ms": {"p50": pct(edge_ms, 50), "p95": pct(edge_ms, 95)},
            "captured_ms_p50": pct([r["captured_ms"] for r in rows], 50),
            "encode_ms_p50": pct([r["encoded_ms"] for r in rows], 50),
            "viewer_ms": {"p50": pct(viewer_ms, 50), "p95": pct(viewer_ms, 95)},
            "by_kind": {
                kind: {
                    "edge_p50": statistics.median(r["edge_ms"] for r in rows if r["kind"] == kind),
                    "viewer_p50": statistics.median(
                        r["viewer_ms"] for r in rows if r["kind"] == kind
                    ),
                }
                for kind in ("key", "tap")
            },
            "rows": rows,
        }
    finally:
        if client is not None:
            await client.close()
        await http.close()
        await server.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    ensure_image(arch=args.arch)
    out: dict[str, Any] = {
        "benchmark": "qemu-latency",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "arch": args.arch,
        "note": args.note,
        "paths": [],
    }
    for name in args.paths.split(","):
        result = await measure_path(name, args.inputs, args.seed, args.arch, args.qemu_binary)
        out["paths"].append(result)
        print(
            f"{args.arch} {name}: boot-to-first-frame {result['boot_to_first_frame_s']:.1f} s; "
            f"input->frame edge p50/p95 {result['edge_ms']['p50']:.1f}/"
            f"{result['edge_ms']['p95']:.1f} ms, viewer {result['viewer_ms']['p50']:.1f}/"
            f"{result['viewer_ms']['p95']:.1f} ms (input->captured p50 "
            f"{result['captured_ms_p50']:.1f}, encode p50 {result['encode_ms_p50']:.1f})"
        )
    return out


def plot(out: dict[str, Any], path: Path) -> None:
    """CDFs of input->frame per capture path, at the edge and at the viewer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for axis, key in zip(axes, ("edge_ms", "viewer_ms"), strict=True):
        for r in out["paths"]:
            xs = np.sort([row[key] for row in r["rows"]])
            axis.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=r["path"])
        axis.set_xlabel(f"input->frame, {key.removesuffix('_ms')} (ms)")
        axis.legend()
    axes[0].set_ylabel("fraction of inputs")
    axes[0].set_title(f"qemu {out['arch']} TCG, h264 720x1280")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _qemu_version(binary: str) -> str:
    """ "QEMU 10.0.2" from `binary --version`, for the results row."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
    except OSError:
        out = []
    return f"qemu {out[3]}" if len(out) > 3 else "qemu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--inputs", type=int, default=60, help="inputs per capture path")
    parser.add_argument("--paths", default="dbus,vnc", help=f"comma list of {', '.join(PATHS)}")
    parser.add_argument("--arch", choices=sorted(ARCHES), default="x86_64", help="guest arch")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--note", default="")
    parser.add_argument("--qemu-binary", default="", help="QEMU to run (default: on PATH)")
    args = parser.parse_args()
    out = asyncio.run(main_async(args))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = results_dir() / f"qemu-latency-{stamp}.json"
    save_json(path, out)
    plot(out, path.with_suffix(".png"))
    arch = "" if args.arch == "x86_64" else f" {args.arch}"  # x86 rows read as before
    for r in out["paths"]:
        result = (
            f"input->frame p50/p95 ms edge {r['edge_ms']['p50']:.1f}/{r['edge_ms']['p95']:.1f}, "
            f"viewer {r['viewer_ms']['p50']:.1f}/{r['viewer_ms']['p95']:.1f}; "
            f"boot-to-first-frame {r['boot_to_first_frame_s']:.1f} s"
            + (f" ({args.note})" if args.note else "")
        )
        touch = "multi-touch" if r["multitouch"] else "tablet"
        version = _qemu_version(args.qemu_binary or f"qemu-system-{args.arch}")
        setup = f"{version}{arch} {r['path']} TCG h264 720x1280, {r['inputs']} keys+taps ({touch})"
        append_results_row("qemu-latency", setup, result, f"results/{path.name}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
