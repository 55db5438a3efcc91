"""What one viewer's RTP send loop costs per picture: aiortc's own loop vs `edge.rtp_send_loop`.

Why this exists: after one encode and one packetisation per stream, each extra viewer costs
its send loop (plus SRTP and the socket). This runs both loops, in this process, over the same
pre-packetised pictures (3 payloads of 1200 bytes, the size of a 720x1280 H.264 picture while a
finger drags, at the edge's default bitrate) with the edge's header extensions (mid,
abs-send-time, playout-delay) and a transport that only counts bytes: the loops' own Python
cost, without SRTP or the kernel. Rounds are interleaved so machine load hits both alike.

Writes benchmarks/results/rtp-send-<stamp>.json and .png and appends a row to RESULTS.md.
Run: `python -m benchmarks.rtp_send` (about 20 seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from cloudphone.codecs import EncodedPacket
from cloudphone.edge import ntp_clock, packetizer, rtp_send_loop
from cloudphone.edge.packetizer import PacketizedPicture
from cloudphone.edge.playout_delay import PLAYOUT_DELAY_URI, send_playout_delay

from .common import append_results_row, results_dir, save_json

CODEC = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
EXTENSIONS = RTCRtpParameters(
    headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(
            id=2, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
        ),
        RTCRtpHeaderExtensionParameters(id=3, uri=PLAYOUT_DELAY_URI),
    ]
)


class _Pictures(MediaStreamTrack):
    """`count` ready pictures, then the end of the track (which ends the loop)."""

    kind = "video"

    def __init__(self, picture: PacketizedPicture, count: int) -> None:
        super().__init__()
        self._picture = picture
        self._left = count

    async def recv(self) -> PacketizedPicture:  # type: ignore[override]
        if self._left == 0:
            raise MediaStreamError
        self._left -= 1
        return self._picture


class _CountingTransport:
    """Stands in for the DTLS transport: takes each RTP packet and counts it."""

    state = "connected"

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0

    async def _send_rtp(self, data: bytes) -> None:
        self.packets += 1
        self.bytes += len(data)


async def one_run(lean: bool, pictures: int, payloads: list[bytes]) -> float:
    """Microseconds per picture for one loop over `pictures` pictures."""
    packet = EncodedPacket(b"".join(payloads), "h264", False, 3000, 720, 1280, 0.0, 0.0)
    picture = PacketizedPicture(packet, payloads, 3000)
    sender = RTCRtpSender(_Pictures(picture, pictures), _CountingTransport())  # type: ignore[arg-type]
    send_playout_delay(sender, 0, 100)  # as a session does; aiortc configures it on send()
    sender._RTCRtpSender__rtp_header_extensions_map.configure(EXTENSIONS)  # type: ignore[attr-defined]
    sender._RTCRtpSender__mid = "0"  # type: ignore[attr-defined]
    if lean:
        assert rtp_send_loop.install(sender)
    started = time.perf_counter()
    await sender._run_rtp(CODEC)
    elapsed = time.perf_counter() - started
    transport: _CountingTransport = sender.transport  # type: ignore[assignment]
    assert transport.packets == pictures * len(payloads)
    return elapsed / pictures * 1e6


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    names = list(result["us_per_picture"])
    ax.boxplot([result["us_per_picture"][n] for n in names], tick_labels=names)
    ax.set_ylabel("us per picture (3 RTP packets)")
    ax.set_ylim(bottom=0)
    ax.set_title("one viewer's RTP send loop, without SRTP or socket")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pictures", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    packetizer.install()
    ntp_clock.install()
    payloads = [bytes([i]) * 1200 for i in range(3)]
    runs: dict[str, list[float]] = {"aiortc": [], "lean": []}
    for _ in range(args.rounds):
        for name in runs:
            runs[name].append(
                round(asyncio.run(one_run(name == "lean", args.pictures, payloads)), 2)
            )
    medians = {name: statistics.median(values) for name, values in runs.items()}
    result = {
        "benchmark": "rtp-send",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "pictures_per_run": args.pictures,
        "payloads_per_picture": len(payloads),
        "us_per_picture": runs,
        "median_us_per_picture": medians,
        "lean_to_aiortc": round(medians["lean"] / medians["aiortc"], 3),
    }
    name = f"rtp-send-{time.strftime('%Y%m%d-%H%M%S')}"
    save_json(results_dir() / f"{name}.json", result)
    plot(result, results_dir() / f"{name}.png")
    append_results_row(
        "rtp-send",
        f"one viewer's send loop, {len(payloads)} x 1200 B per picture, {args.rounds} rounds",
        f"aiortc {medians['aiortc']:.1f} us/picture, lean {medians['lean']:.1f} us/picture "
        f"({result['lean_to_aiortc']}x)",
        f"results/{name}.json",
    )
    print(result)


if __name__ == "__main__":
    main()
