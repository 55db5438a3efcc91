"""Drawing primitives on numpy RGB images, fast enough to redraw a phone screen per input.

Pillow is used only to rasterise text and icons once; the results are cached as small RGBA
sprites and blended with numpy. Converting a whole 720x1280 Pillow image to numpy costs ~5 ms,
rasterising one line of text ~2 ms, while a numpy copy of the screen is ~0.7 ms, so every frame
is composed from cached numpy pieces.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans when the system has it, else Pillow's bundled scalable font."""
    for path in (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ):
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=2048)
def text_sprite(text: str, size: int, colour: Colour) -> np.ndarray:
    """RGBA sprite of one line of text (cached: text is the expensive part of a frame)."""
    f = font(size)
    left, top, right, bottom = f.getbbox(text or " ")
    width, height = int(max(1, right - left + 2)), int(max(1, bottom - top + 2))
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((1 - left, 1 - top), text, font=f, fill=(*colour, 255))
    return np.array(image)


@lru_cache(maxsize=64)
def rounded_sprite(width: int, height: int, radius: int, colour: Colour) -> np.ndarray:
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(image).rounded_rectangle(
        (0, 0, width - 1, height - 1), radius=radius, fill=(*colour, 255)
    )
    return np.array(image)


@lru_cache(maxsize=32)
def disc_mask(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (xx * xx + yy * yy) <= radius * radius


def blit(dst: np.ndarray, sprite: np.ndarray, x: int, y: int) -> None:
    """Alpha-blend an RGBA sprite onto an RGB image at (x, y), clipped to the image."""
    h, w = sprite.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(dst.shape[1], x + w), min(dst.shape[0], y + h)
    if x0 >= x1 or y0 >= y1:
        return
    part = sprite[y0 - y : y1 - y, x0 - x : x1 - x]
    alpha = part[:, :, 3:4].astype(np.uint16)
    region = dst[y0:y1, x0:x1]
    region[:] = (
        (part[:, :, :3].astype(np.uint16) * alpha + region.astype(np.uint16) * (255 - alpha)) // 255
    ).astype(np.uint8)


def fill(dst: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour: Colour) -> None:
    """Solid rectangle. Fills one row, then copies rows: broadcasting a 3-byte colour over a
    large region directly is ~20x slower (strided stores)."""
    region = dst[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
    if region.size == 0:
        return
    region[0] = colour
    region[1:] = region[0]


def disc(dst: np.ndarray, cx: int, cy: int, radius: int, colour: Colour) -> None:
    mask = disc_mask(radius)
    x0, y0 = cx - radius, cy - radius
    size = 2 * radius + 1
    sx0, sy0 = max(0, -x0), max(0, -y0)
    sx1 = min(size, dst.shape[1] - x0)
    sy1 = min(size, dst.shape[0] - y0)
    if sx0 >= sx1 or sy0 >= sy1:
        return
    region = dst[y0 + sy0 : y0 + sy1, x0 + sx0 : x0 + sx1]
    region[mask[sy0:sy1, sx0:sx1]] = colour


def stroke(
    dst: np.ndarray, x0: int, y0: int, x1: int, y1: int, radius: int, colour: Colour
) -> None:
    """A thick line with round caps: discs stamped every half radius along the segment."""
    steps = max(1, int(max(abs(x1 - x0), abs(y1 - y0)) / max(1, radius // 2)))
    for i in range(steps + 1):
        t = i / steps
        disc(dst, round(x0 + (x1 - x0) * t), round(y0 + (y1 - y0) * t), radius, colour)
