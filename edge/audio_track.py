"""The aiortc audio track of one viewer: a guest's own Opus packets, passed through.

Like the video track, it hands `av.Packet`s to `RTCRtpSender`, which only packetises them
(aiortc's Opus `pack`): no decode, no resample, no encode on the edge. A guest offers audio by
having `audio_codec == "opus"` and emitting `audio` events whose items carry `data` (one Opus
packet) and `pts_us` (the device clock). A viewer that falls behind loses the backlog, not
the beat: audio latency must stay as low as the picture's.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from typing import Any, Protocol

import av
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

AUDIO_EVENT = "audio"
TIME_BASE = Fraction(1, 1_000_000)
MAX_BACKLOG = 10  # 200 ms of 20 ms packets


class AudioItem(Protocol):
    data: bytes
    pts_us: int


def guest_audio_codec(guest: Any) -> str | None:
    """ "opus" when the guest streams Opus right now (Android over scrcpy, Android 11+)."""
    codec = getattr(guest, "audio_codec", None)
    return codec if codec == "opus" else None


class PassthroughAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, guest: Any) -> None:
        super().__init__()
        self._guest = guest
        self._queue: asyncio.Queue[AudioItem | None] = asyncio.Queue()
        self.packets_sent = 0
        self.packets_dropped = 0
        guest.events.on(AUDIO_EVENT, self._on_audio)

    def _on_audio(self, item: AudioItem) -> None:
        if self._queue.qsize() >= MAX_BACKLOG:
            while not self._queue.empty():
                self._queue.get_nowait()
                self.packets_dropped += 1
        self._queue.put_nowait(item)

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        item = await self._queue.get()
        if item is None:
            raise MediaStreamError
        packet = av.Packet(item.data)
        packet.pts = item.pts_us
        packet.time_base = TIME_BASE
        self.packets_sent += 1
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            self._guest.events.remove_listener(AUDIO_EVENT, self._on_audio)
            self._queue.put_nowait(None)
        super().stop()


def add_audio_transceiver(pc: RTCPeerConnection, guest: Any) -> PassthroughAudioTrack:
    """A send-only Opus transceiver. aiortc puts every track of a connection in one media
    stream, so a page that plays `streams[0]` in its <video> gets picture and sound together."""
    track = PassthroughAudioTrack(guest)
    transceiver = pc.addTransceiver(track, direction="sendonly")
    opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"]
    transceiver.setCodecPreferences(opus)
    return track
