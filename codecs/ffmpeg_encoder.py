"""Shared machinery of the PyAV-backed encoders: context lifecycle, conversion, keyframes.

Bitrate changes: the FFmpeg wrappers of libx264 and libvpx shipped in PyAV's wheels do not pass
an `AVCodecContext.bit_rate` change on to the running encoder (measured: the output rate does
not move), and PyAV cannot write `rc_max_rate` after opening. So a bitrate change re-opens the
context between two pictures. Opening takes ~1 ms at 720p and the next picture is an IDR, so the
viewer sees no pause, only one larger frame; the controller in `edge.bitrate` keeps such moves
rare (hysteresis, minimum spacing).
"""

from __future__ import annotations

import abc
import logging
import time
from fractions import Fraction

import av
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType
from cloudphone.codecs.base import (
    VIDEO_CLOCK_RATE,
    EncodedPacket,
    EncoderConfig,
    EncoderUnavailable,
    VideoEncoder,
)
from cloudphone.codecs.convert import ColourConverter
from cloudphone.vm.guest import RawFrame

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)


class FFmpegVideoEncoder(VideoEncoder):
    """A `VideoEncoder` over one PyAV codec context; subclasses give the codec and options."""

    ffmpeg_codec: str

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        self._converter = ColourConverter(config.width, config.height)
        self._pending_bitrate: int | None = None
        self._context = self._open(self.bitrate)

    @abc.abstractmethod
    def _options(self, bitrate: int) -> dict[str, str]:
        """Codec private options for a given target bitrate."""

    def _open(self, bitrate: int) -> VideoCodecContext:
        try:
            context = av.CodecContext.create(self.ffmpeg_codec, "w")
            assert isinstance(context, VideoCodecContext)
        except (av.FFmpegError, ValueError) as exc:  # pragma: no cover - depends on the wheel
            raise EncoderUnavailable(f"{self.ffmpeg_codec} is not available: {exc}") from exc
        cfg = self.config
        context.width = cfg.width
        context.height = cfg.height
        context.pix_fmt = "yuv420p"
        context.time_base = TIME_BASE
        context.framerate = Fraction(cfg.fps, 1)
        context.bit_rate = bitrate
        context.gop_size = max(1, int(cfg.keyframe_interval_s * cfg.fps))
        context.thread_count = 1
        context.options = self._options(bitrate)
        context.open()
        return context

    def set_bitrate(self, bitrate: int) -> None:
        bitrate = self.config.clamp(bitrate)
        if bitrate != self.bitrate:
            self._pending_bitrate = bitrate

    def encode(
        self, frame: RawFrame, pts: int, force_keyframe: bool = False
    ) -> list[EncodedPacket]:
        started = time.monotonic()
        if self._pending_bitrate is not None:
            self._reopen(self._pending_bitrate)
            force_keyframe = True
        video = self._converter.convert(frame)
        video.pts = pts
        video.time_base = TIME_BASE
        if force_keyframe:
            video.pict_type = PictureType.I
        out = [
            EncodedPacket(
                data=bytes(packet),
                codec=self.codec,
                keyframe=bool(packet.is_keyframe),
                pts=pts,
                width=self.config.width,
                height=self.config.height,
                captured_at=frame.captured_at,
                encoded_at=time.monotonic(),
                input_seq=frame.input_seq,
                frame_id=frame.frame_id,
                encode_started_at=started,
            )
            for packet in self._context.encode(video)
        ]
        self.frames_encoded += 1
        self.keyframes_encoded += sum(1 for p in out if p.keyframe)
        return out

    def _reopen(self, bitrate: int) -> None:
        old = self._context
        self._context = self._open(bitrate)
        log.debug("%s: bitrate %d -> %d bps", self.codec, self.bitrate, bitrate)
        self.bitrate = bitrate
        self._pending_bitrate = None
        _drain(old)

    def close(self) -> None:
        _drain(self._context)


def _drain(context: VideoCodecContext) -> None:
    """Flush a context so FFmpeg frees it cleanly (a dropped, unflushed context can hang)."""
    try:
        for _ in context.encode(None):
            pass
    except (av.FFmpegError, ValueError):
        pass
