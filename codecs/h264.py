"""H.264 via libx264: ultrafast, zero latency, constrained baseline, VBV-capped.

Constrained baseline is what every WebRTC browser decodes (Safari insists); `repeat-headers`
puts SPS/PPS in front of every IDR so a viewer can start from any keyframe; a VBV buffer of a
fraction of a second keeps frame sizes near the target so the send burst stays short.
"""

from __future__ import annotations

from cloudphone.codecs.base import EncoderConfig
from cloudphone.codecs.ffmpeg_encoder import FFmpegVideoEncoder

# (level, max macroblocks per second, max frame size in macroblocks), H.264 Table A-1.
_LEVELS: tuple[tuple[str, int, int], ...] = (
    ("3.0", 40_500, 1_620),
    ("3.1", 108_000, 3_600),
    ("3.2", 216_000, 5_120),
    ("4.0", 245_760, 8_192),
    ("4.2", 522_240, 8_704),
    ("5.0", 589_824, 22_080),
    ("5.1", 983_040, 36_864),
    ("5.2", 2_073_600, 36_864),
)


def h264_level(width: int, height: int, fps: int) -> str:
    """The lowest level whose frame size and macroblock rate fit the stream."""
    mbs = ((width + 15) // 16) * ((height + 15) // 16)
    for level, max_mbps, max_fs in _LEVELS:
        if mbs <= max_fs and mbs * fps <= max_mbps:
            return level
    return _LEVELS[-1][0]


class H264Encoder(FFmpegVideoEncoder):
    codec = "h264"
    ffmpeg_codec = "libx264"

    def __init__(self, config: EncoderConfig) -> None:
        self.level = h264_level(config.width, config.height, config.fps)
        super().__init__(config)

    def _options(self, bitrate: int) -> dict[str, str]:
        fps = self.config.fps
        return {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "level": self.level,
            "forced-idr": "1",
            # VBV: peak 1.2x target, buffer of ~4 frames' worth: bounded frame sizes.
            "maxrate": str(int(bitrate * 1.2)),
            "bufsize": str(int(bitrate * 4 / fps)),
            "x264-params": ":".join(
                (
                    "scenecut=0",
                    "repeat-headers=1",
                    "annexb=1",
                    "nal-hrd=none",
                    "aud=0",
                    "sliced-threads=0",
                )
            ),
        }
