"""Colour conversion and scaling of guest pictures into the encoder's YUV 4:2:0.

One `VideoReformatter` is kept per stream (swscale caches its context; it releases the GIL).

Damage: a picture that says which row bands changed since the previous one (`RawFrame.damage`)
is converted band by band into the previous picture's YUV, instead of whole. A tap in a phone
UI changes a few percent of the rows, so this turns a 1.5-6 ms full-frame RGB->YUV conversion
(measured on the 2-core machines) into a fraction of a millisecond. Bands are widened to even
rows because 4:2:0 chroma covers row pairs.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter
from cloudphone.vm.guest import RawFrame

BAND_CONTEXT_ROWS = 8
BAND_BLOCK_ROWS = 32


class ColourConverter:
    """Turns `RawFrame`s into yuv420p `av.VideoFrame`s of a fixed output size."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.rows_converted = 0
        self._reformatter = VideoReformatter()
        # swscale contexts are per size: one reformatter per band height (bands are whole blocks).
        self._band_reformatters: dict[int, VideoReformatter] = {}
        self._yuv: np.ndarray | None = None  # (H*3/2) x W, the last output, planes stacked
        self._source_format: str | None = None

    def convert(self, frame: RawFrame) -> av.VideoFrame:
        try:
            if self._can_patch(frame):
                return self._patch(frame)
            return self._full(frame)
        except Exception:
            self._yuv = None
            raise

    def _can_patch(self, frame: RawFrame) -> bool:
        return (
            frame.damage is not None
            and self._yuv is not None
            and frame.pixel_format == self._source_format
            and frame.pixel_format != "yuv420p"
            and frame.width == self.width
            and frame.height == self.height
        )

    def _full(self, frame: RawFrame) -> av.VideoFrame:
        data = frame.data
        if frame.pixel_format == "yuv420p":
            video = av.VideoFrame.from_ndarray(np.ascontiguousarray(data), format="yuv420p")
        else:
            video = av.VideoFrame.from_ndarray(data, format=frame.pixel_format)
        if not (
            video.format.name == "yuv420p"
            and video.width == self.width
            and video.height == self.height
        ):
            video = self._reformatter.reformat(
                video,
                width=self.width,
                height=self.height,
                format="yuv420p",
                interpolation=Interpolation.BILINEAR,
            )
        self.rows_converted += self.height
        if frame.pixel_format != "yuv420p" and (frame.width, frame.height) == (
            self.width,
            self.height,
        ):
            self._yuv = video.to_ndarray()
            self._source_format = frame.pixel_format
        else:
            self._yuv = None  # scaled pictures are converted whole
        return video

    def _patch(self, frame: RawFrame) -> av.VideoFrame:
        assert self._yuv is not None and frame.damage is not None
        width, height = self.width, self.height
        flat = self._yuv.reshape(-1)
        luma, chroma = width * height, (width // 2) * (height // 2)
        for y0, y1 in _even_bands(frame.damage, height):
            # swscale's chroma filter reaches past a row pair: convert with context rows
            # around the band and keep only the band, so the result is bit-exact.
            c0, c1 = max(0, y0 - BAND_CONTEXT_ROWS), min(height, y1 + BAND_CONTEXT_ROWS)
            band = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(frame.data[c0:c1]), format=frame.pixel_format
            )
            reformatter = self._band_reformatters.get(c1 - c0)
            if reformatter is None:
                reformatter = self._band_reformatters[c1 - c0] = VideoReformatter()
            yuv = (
                reformatter.reformat(band, format="yuv420p", interpolation=Interpolation.BILINEAR)
                .to_ndarray()
                .reshape(-1)
            )
            rows = c1 - c0
            band_luma, band_chroma = rows * width, (rows // 2) * (width // 2)
            skip = y0 - c0
            flat[y0 * width : y1 * width] = yuv[skip * width : (skip + y1 - y0) * width]
            u_plane = yuv[band_luma : band_luma + band_chroma]
            v_plane = yuv[band_luma + band_chroma :]
            half = width // 2
            src0, src1 = (skip // 2) * half, ((skip + y1 - y0) // 2) * half
            dst0, dst1 = (y0 // 2) * half, (y1 // 2) * half
            flat[luma + dst0 : luma + dst1] = u_plane[src0:src1]
            flat[luma + chroma + dst0 : luma + chroma + dst1] = v_plane[src0:src1]
            self.rows_converted += rows
        return av.VideoFrame.from_ndarray(self._yuv, format="yuv420p")


def _even_bands(bands: tuple[tuple[int, int], ...], height: int) -> list[tuple[int, int]]:
    """Clamp to the picture, round out to whole `BAND_BLOCK_ROWS` blocks (few distinct band
    heights, so few swscale contexts; blocks are even, as 4:2:0 needs), merge neighbours."""
    block = BAND_BLOCK_ROWS
    cleaned = sorted(
        (max(0, y0) // block * block, min(height, -(-min(height, y1) // block) * block))
        for y0, y1 in bands
        if min(height, y1) > max(0, y0)
    )
    merged: list[tuple[int, int]] = []
    for y0, y1 in cleaned:
        if merged and y0 <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], y1))
        else:
            merged.append((y0, y1))
    return merged
