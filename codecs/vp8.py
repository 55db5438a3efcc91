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
            # Speed 8 and skipping blocks that did not change (a phone UI is mostly still):
            # ~6 % faster than static-thresh 0 on the same frames. Speeds of 12 and more are
            # faster still but stop obeying the target bitrate (measured: 4 Mbps at 0.2 target).
            "cpu-used": "8",
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
