"""Demux scrcpy's video socket into whole H.264 access units ready for passthrough.

What comes off the socket is MediaCodec's output framed by 12-byte headers: a *config* packet
(SPS/PPS) at the start of every capture session, then one packet per picture. WebRTC needs
parameter sets in front of every keyframe (a viewer may start at any of them), so config is
merged into the next packet, as scrcpy's own client does, and cached parameter sets are put
in front of later keyframes that come without them. Servers 3.x announce the picture size once
and show rotations only through a new SPS; 4.x send a session packet; both become `Session`.

Anything that cannot be valid (unknown codec id, zero or absurd sizes, a header cut short)
raises `ProtocolError`: the caller closes that guest, not the edge.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from cloudphone.vm.android import annexb
from cloudphone.vm.android.scrcpy_protocol import (
    CODEC_STREAM_DISABLED,
    CODEC_STREAM_ERROR,
    HEADER_SIZE,
    ProtocolError,
    ServerVersion,
    Session,
    codec_name,
    is_session_header,
    parse_frame_header,
    parse_initial_size,
    parse_session,
)


class StreamEnded(EOFError):
    """The device closed the video socket at a packet boundary (server stopped or died)."""


class StreamDisabled(Exception):
    """The device wrote 0 or 1 instead of a codec id: it will not (0) or cannot (1) stream."""

    def __init__(self, message: str, *, error: bool) -> None:
        super().__init__(message)
        self.error = error


async def _read_codec_id(reader: asyncio.StreamReader, what: str) -> int:
    raw = await _read_exactly(reader, 4, f"{what} codec id")
    (codec_id,) = struct.unpack(">I", raw)
    if codec_id == CODEC_STREAM_DISABLED:
        raise StreamDisabled(f"the device disabled the {what} stream", error=False)
    if codec_id == CODEC_STREAM_ERROR:
        raise StreamDisabled(f"{what} configuration error on the device", error=True)
    return int(codec_id)


@dataclass(frozen=True, slots=True)
class VideoPacket:
    """One access unit, Annex-B, parameter sets included when it is a keyframe."""

    data: bytes
    pts: int  # microseconds, the device's clock
    keyframe: bool


async def _read_exactly(reader: asyncio.StreamReader, n: int, what: str) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise StreamEnded(f"video stream ended before {what}") from None
        raise ProtocolError(f"truncated {what}: {len(exc.partial)} of {n} bytes") from None


class VideoDemuxer:
    """Reads one video socket: `read_codec()` once, then `next()` until `StreamEnded`."""

    def __init__(self, reader: asyncio.StreamReader, version: ServerVersion) -> None:
        self._reader = reader
        self.version = version
        self.codec: str | None = None
        self.session: Session | None = None
        self._pending_config: bytes | None = None
        self._parameter_sets: bytes = b""
        self._announce: Session | None = None
        self.packets = 0
        self.bytes = 0

    async def read_codec(self) -> str:
        """Read the codec id (and for 3.x the initial size, kept until `next()` reports it)."""
        codec_id = await _read_codec_id(self._reader, "video")
        self.codec = codec_name(codec_id, video=True)
        if not self.version.has_session_packets:
            data = await _read_exactly(self._reader, 8, "video size")
            self._announce = parse_initial_size(data)
        else:
            self._announce = None
        return self.codec

    async def next(self) -> Session | VideoPacket:
        """The next session change or access unit."""
        if self._announce is not None:
            session, self._announce = self._announce, None
            self.session = session
            return session
        while True:
            header = await _read_exactly(self._reader, HEADER_SIZE, "packet header")
            if self.version.has_session_packets and is_session_header(header):
                session = parse_session(header)
                self.session = session
                return session
            if self.session is None:
                raise ProtocolError("media packet before any session")
            frame = parse_frame_header(header, self.version)
            payload = await _read_exactly(self._reader, frame.size, "packet payload")
            self.packets += 1
            self.bytes += HEADER_SIZE + frame.size
            if frame.config:
                self._pending_config = (self._pending_config or b"") + payload
                if self.codec == "h264":
                    changed = self._size_from_config(payload)
                    if changed is not None:
                        return changed
                continue
            return self._media(payload, frame.pts or 0, frame.keyframe)

    def _size_from_config(self, config: bytes) -> Session | None:
        """3.x: a rotation shows up only as a new SPS with another size."""
        try:
            size = annexb.find_sps_size(config)
        except ValueError as exc:
            raise ProtocolError(f"unparsable SPS: {exc}") from None
        if size is None:
            return None
        self._parameter_sets = b"".join(
            b"\x00\x00\x00\x01" + config[s:e]
            for s, e in annexb.iter_nals(config)
            if config[s] & 0x1F in (annexb.NAL_SPS, annexb.NAL_PPS)
        )
        current = self.session
        if current is not None and (current.width, current.height) == size:
            return None
        if self.version.has_session_packets:
            # 4.x says so with a session packet; the SPS may carry the aligned size.
            return None
        self.session = Session(*size)
        return self.session

    def _media(self, payload: bytes, pts: int, keyframe: bool) -> VideoPacket:
        if self._pending_config is not None:
            data = self._pending_config + payload
            self._pending_config = None
        elif (
            keyframe
            and self._parameter_sets
            and annexb.NAL_SPS not in annexb.nal_types(payload[:64])
        ):
            data = self._parameter_sets + payload
        else:
            data = payload
        return VideoPacket(data=data, pts=pts, keyframe=keyframe)


@dataclass(frozen=True, slots=True)
class AudioPacket:
    """One Opus packet (20 ms) as the device's MediaCodec made it."""

    data: bytes
    pts_us: int  # the device's clock


class AudioDemuxer:
    """Reads the audio socket: codec id, then media packets (config packets carry the OpusHead,
    which RTP does not need, and are skipped). No session packets on audio."""

    def __init__(self, reader: asyncio.StreamReader, version: ServerVersion) -> None:
        self._reader = reader
        self.version = version
        self.codec: str | None = None

    async def read_codec(self) -> str:
        self.codec = codec_name(await _read_codec_id(self._reader, "audio"), video=False)
        return self.codec

    async def next(self) -> AudioPacket:
        while True:
            header = await _read_exactly(self._reader, HEADER_SIZE, "audio packet header")
            frame = parse_frame_header(header, self.version)
            payload = await _read_exactly(self._reader, frame.size, "audio packet payload")
            if not frame.config:
                return AudioPacket(payload, frame.pts or 0)
