"""Encoder interface: one picture in, encoded access units out.

Modelled on aiortc's `codecs/base.py`, but the edge owns its encoders instead of letting aiortc
create one per viewer: an instance is encoded once per codec in use and the packets are fanned
out. So the interface exposes what aiortc hides: forcing a keyframe on demand (PLI, a new viewer)
and changing the bitrate from REMB.

Encoders are *blocking* objects driven from one worker thread (`codecs.worker`); nothing here
touches asyncio.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from cloudphone.vm.guest import RawFrame

#: RTP clock of every video payload format we send.
VIDEO_CLOCK_RATE = 90_000


@dataclass(frozen=True, slots=True)
class EncoderConfig:
    """What to encode, and the bounds the bitrate controller may move within."""

    codec: str  # "h264" | "vp8"
    width: int
    height: int
    fps: int = 30
    bitrate: int = 2_500_000
    min_bitrate: int = 300_000
    max_bitrate: int = 8_000_000
    keyframe_interval_s: float = 10.0

    def clamp(self, bitrate: int) -> int:
        return max(self.min_bitrate, min(self.max_bitrate, int(bitrate)))


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One encoded picture, ready to be packetised: Annex-B H.264 or a VP8 frame."""

    data: bytes
    codec: str
    keyframe: bool
    pts: int  # in VIDEO_CLOCK_RATE ticks
    width: int
    height: int
    captured_at: float  # monotonic time the picture was made (for latency accounting)
    encoded_at: float  # monotonic time encoding finished
    input_seq: int = 0
    frame_id: int = 0
    encode_started_at: float = 0.0


class VideoEncoder(abc.ABC):
    """A stateful encoder for one stream. Not thread-safe: one worker thread calls `encode`."""

    codec: str

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
        self.bitrate = config.clamp(config.bitrate)
        self.frames_encoded = 0
        self.keyframes_encoded = 0

    @abc.abstractmethod
    def encode(
        self, frame: RawFrame, pts: int, force_keyframe: bool = False
    ) -> list[EncodedPacket]:
        """Encode one picture (converting and scaling as needed) and return its packets."""

    @abc.abstractmethod
    def set_bitrate(self, bitrate: int) -> None:
        """Target a new bitrate (clamped to the config's bounds) from the next picture on."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the codec context. The encoder cannot be used afterwards."""


class EncoderUnavailable(RuntimeError):
    """The requested codec cannot be built with the FFmpeg this process has."""
