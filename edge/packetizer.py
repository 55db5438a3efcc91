"""Packetise each encoded picture once per stream, not once per viewer.

aiortc's `RTCRtpSender` turns whatever its track returns into RTP payloads with its own
`encoder.pack()`, so twenty viewers of one stream split the same H.264 access unit into the same
FU-A fragments twenty times. The payloads do not depend on the viewer (SSRC, sequence numbers,
the timestamp origin and SRTP are added afterwards, per sender), so the pipeline packetises a
picture once — `StreamPacketizer`, one per stream, the first viewer to send it pays — and every
sender of the stream gets the same `PacketizedPicture`.

aiortc has no hook for this: it calls `get_encoder(codec)` for each sender and `pack()` on what
the track returns. `install()` wraps that `get_encoder` so video senders get a
`PrepacketizedEncoder`, whose `pack()` hands the ready payloads back and which falls back to
aiortc's own packetiser for anything else. VP8 keeps one picture-id sequence per stream (the
stream's packetiser counts), so every viewer sees ids that grow by one per picture sent.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from aiortc import rtcrtpsender
from aiortc.codecs import get_encoder as aiortc_get_encoder
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from cloudphone.codecs import VIDEO_CLOCK_RATE, EncodedPacket

TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)
#: Pictures a packetiser remembers: more than a viewer's backlog, so a slow viewer still hits.
RECENT_PICTURES = 16


@dataclass(frozen=True, slots=True)
class PacketizedPicture:
    """One encoded picture and its RTP payloads, shared by every sender of its stream."""

    packet: EncodedPacket
    payloads: list[bytes]
    timestamp: int  # RTP timestamp before the sender adds its random origin


class StreamPacketizer:
    """Packetises the pictures of one stream (one codec, one mark), each exactly once."""

    def __init__(self, codec: str) -> None:
        self._inner: Encoder = _aiortc_packetizer(codec)
        self._recent: collections.OrderedDict[int, PacketizedPicture] = collections.OrderedDict()
        self.pictures_packetized = 0

    def packetize(self, packet: EncodedPacket) -> PacketizedPicture:
        picture = self._recent.get(id(packet))
        if picture is not None and picture.packet is packet:
            return picture
        payloads, timestamp = self._inner.pack(as_av_packet(packet))
        picture = PacketizedPicture(packet, payloads, timestamp)
        self._recent[id(packet)] = picture  # holds `packet`, so its id cannot be reused
        if len(self._recent) > RECENT_PICTURES:
            self._recent.popitem(last=False)
        self.pictures_packetized += 1
        return picture


class PrepacketizedEncoder(Encoder):
    """The `encoder` aiortc keeps per video sender: payloads come ready from the stream."""

    def __init__(self, codec: RTCRtpCodecParameters) -> None:
        self._codec = codec
        self._fallback: Encoder | None = None
        self.target_bitrate = 0  # aiortc writes REMB estimates here; the pipeline has its own

    def pack(self, packet: Any) -> tuple[list[bytes], int]:
        if isinstance(packet, PacketizedPicture):
            return packet.payloads, packet.timestamp
        return self._aiortc().pack(packet)

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        return self._aiortc().encode(frame, force_keyframe)

    def _aiortc(self) -> Encoder:
        if self._fallback is None:
            self._fallback = aiortc_get_encoder(self._codec)
        return self._fallback


def as_av_packet(packet: EncodedPacket) -> av.Packet:
    out = av.Packet(packet.data)
    out.pts = packet.pts
    out.dts = packet.pts
    out.time_base = TIME_BASE
    return out


def _aiortc_packetizer(codec: str) -> Encoder:
    if codec == "h264":
        return H264Encoder()
    if codec == "vp8":
        return Vp8Encoder()
    raise ValueError(f"no RTP packetiser for {codec!r}")


def _get_encoder(codec: RTCRtpCodecParameters) -> Encoder:
    if codec.mimeType.lower() in ("video/h264", "video/vp8"):
        return PrepacketizedEncoder(codec)
    return aiortc_get_encoder(codec)


def install() -> None:
    """Give aiortc's video senders the pre-packetised encoder (idempotent)."""
    rtcrtpsender.get_encoder = _get_encoder
