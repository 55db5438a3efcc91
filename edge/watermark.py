"""Viewer watermarks drawn into the picture on the server, before encoding.

A screenshot of the stream then names who took it: the label (user name or invite label) and
the UTC time to the minute, tiled over the whole screen at ~30 % opacity, blended towards the
inverse of the pixel underneath so it shows on light and dark screens alike. Because the
mark is in the pixels, a per-viewer mark needs its own encode: the pipeline keeps one encoder
per (codec, mark), so N distinct viewer identities cost N encodes (see docs/sharing.md and
`benchmarks/fanout.py`). Drawing runs on the encoder's thread, never on the event loop.

The mark is rendered once per minute into a sparse list of pixels and alpha values; applying
it to a frame is one copy plus a blend of those pixels (~2-3 ms at 720x1280).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from cloudphone.codecs.base import EncodedPacket, VideoEncoder
from cloudphone.vm.guest import RawFrame
from cloudphone.vm.simulated.canvas import text_sprite

OPACITY = 0.3
TEXT_SIZE = 30
_PACKED_CHANNELS = {"rgb24": 3, "bgr24": 3, "bgra": 4, "rgba": 4, "bgr0": 4, "rgb0": 4}


def mark_text(label: str, at: float | None = None) -> str:
    return f"{label}  {time.strftime('%Y-%m-%d %H:%M', time.gmtime(at))} UTC"


def mark_mask(text: str, width: int, height: int) -> np.ndarray:
    """Alpha (0..1, float32, H x W) of `text` tiled over the screen, rows offset like bricks."""
    sprite = text_sprite(text, TEXT_SIZE, (255, 255, 255))[:, :, 3].astype(np.float32) / 255.0
    sh, sw = sprite.shape
    mask = np.zeros((height, width), np.float32)
    step_x, step_y = sw + 60, sh + 110
    for row, y in enumerate(range(40, height, step_y)):
        offset = (row % 2) * (step_x // 2) - step_x // 2
        for x in range(offset, width, step_x):
            x0, y0 = max(0, x), y
            x1, y1 = min(width, x + sw), min(height, y + sh)
            if x0 < x1 and y0 < y1:
                region = mask[y0:y1, x0:x1]
                np.maximum(region, sprite[y0 - y : y1 - y, x0 - x : x1 - x], out=region)
    return mask * OPACITY


@dataclasses.dataclass
class _Rendered:
    text: str
    shape: tuple[int, int]
    # Row bands that hold text, each with its opacity in 1/256 (H_band x W, int16).
    bands: list[tuple[int, int, np.ndarray]]


def _bands(mask: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    rows = np.flatnonzero(mask.max(axis=1) > 0.004)
    out: list[tuple[int, int, np.ndarray]] = []
    if rows.size == 0:
        return out
    splits = np.flatnonzero(np.diff(rows) > 1) + 1
    for run in np.split(rows, splits):
        y0, y1 = int(run[0]), int(run[-1]) + 1
        out.append((y0, y1, (mask[y0:y1] * 256).astype(np.int16)))
    return out


class Watermark:
    """The mark of one label; `apply` returns a marked copy of a frame (the original is shared
    with other encoders and must not change). Blending whole row bands with integer maths is
    faster than scattering the few marked pixels (~6 vs ~8 ms on a busy 2-core machine)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._rendered: _Rendered | None = None

    def _render(self, width: int, height: int) -> _Rendered:
        text = mark_text(self.label)
        current = self._rendered
        if current is not None and current.text == text and current.shape == (height, width):
            return current
        rendered = _Rendered(text, (height, width), _bands(mark_mask(text, width, height)))
        self._rendered = rendered
        return rendered

    def apply(self, frame: RawFrame) -> RawFrame:
        width, height = frame.width, frame.height
        if frame.pixel_format != "yuv420p" and frame.pixel_format not in _PACKED_CHANNELS:
            return frame  # a format we do not know how to mark: never corrupt it
        previous = self._rendered
        rendered = self._render(width, height)
        data = frame.data.copy()
        for y0, y1, alpha in rendered.bands:
            if frame.pixel_format == "yuv420p":  # luma only: white text = brighter Y
                region, weight = data[y0:y1], alpha
            else:
                region, weight = data[y0:y1], alpha[:, :, None]  # the 4th byte is unused
            # Towards the inverse colour: light text on dark screens, dark text on light ones.
            values = region.astype(np.int16)
            values += ((255 - 2 * values) * weight) >> 8
            region[...] = values
        # A new mark (the minute changed) differs everywhere it is drawn: no damage shortcut.
        damage = frame.damage if previous is rendered else None
        return dataclasses.replace(frame, data=data, damage=damage)


class MarkedEncoder(VideoEncoder):
    """An encoder that watermarks each picture (on its own worker thread) before encoding."""

    def __init__(self, inner: VideoEncoder, watermark: Watermark) -> None:
        super().__init__(inner.config)
        self.codec = inner.codec
        self.inner = inner
        self.watermark = watermark
        self.bitrate = inner.bitrate

    def encode(
        self, frame: RawFrame, pts: int, force_keyframe: bool = False
    ) -> list[EncodedPacket]:
        packets = self.inner.encode(self.watermark.apply(frame), pts, force_keyframe)
        self.frames_encoded = self.inner.frames_encoded
        self.keyframes_encoded = self.inner.keyframes_encoded
        return packets

    def set_bitrate(self, bitrate: int) -> None:
        self.inner.set_bitrate(bitrate)
        self.bitrate = self.inner.bitrate

    def close(self) -> None:
        self.inner.close()
