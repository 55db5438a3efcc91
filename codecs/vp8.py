"""VP8 via libvpx in real-time mode.

One thread only: on 2 cores two libvpx threads stalled for 200-500 ms (FIELD-NOTES). Error
resilient mode keeps a lost packet from corrupting everything up to the next keyframe.
"""

from __future__ import annotations

from cloudphone.codecs.ffmpeg_encoder import FFmpegVideoEncoder


class Vp8Encoder(FFmpegVideoEncoder):
    codec = "vp8"
    ffmpeg_codec = "libvpx"

    def _options(self, bitrate: int) -> dict[str, str]:
        return {
            "deadline": "realtime",
            # Fastest real-time speed, and skip blocks that did not change: a phone UI is
            # mostly still. Interleaved on the same frames: 10.3 vs 15.7 ms/frame at 720x1280
            # against cpu-used 8 / static-thresh 0, and smaller frames.
            "cpu-used": "16",
            "lag-in-frames": "0",
            "error-resilient": "1",
            "static-thresh": "100",
            "undershoot-pct": "95",
            "overshoot-pct": "20",
            "max-intra-rate": "300",
            "noise-sensitivity": "0",
            "minrate": str(int(bitrate * 0.1)),
            "maxrate": str(int(bitrate * 1.2)),
            "bufsize": str(int(bitrate * 0.5)),
            "qmin": "4",
            "qmax": "56",
        }
