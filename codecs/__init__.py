"""Encoders owned by the edge: H.264 (libx264) and VP8 (libvpx), one interface.

`create_encoder` is the only factory the pipeline uses; `SUPPORTED_CODECS` lists what it builds.
"""

from __future__ import annotations

from cloudphone.codecs.base import (
    VIDEO_CLOCK_RATE,
    EncodedPacket,
    EncoderConfig,
    EncoderUnavailable,
    VideoEncoder,
)

SUPPORTED_CODECS: tuple[str, ...] = ("h264", "vp8")


def create_encoder(config: EncoderConfig) -> VideoEncoder:
    """Build the encoder for `config.codec`."""
    if config.codec == "h264":
        from cloudphone.codecs.h264 import H264Encoder

        return H264Encoder(config)
    if config.codec == "vp8":
        from cloudphone.codecs.vp8 import Vp8Encoder

        return Vp8Encoder(config)
    raise EncoderUnavailable(f"unknown codec {config.codec!r}")


__all__ = [
    "SUPPORTED_CODECS",
    "VIDEO_CLOCK_RATE",
    "EncodedPacket",
    "EncoderConfig",
    "EncoderUnavailable",
    "VideoEncoder",
    "create_encoder",
]
