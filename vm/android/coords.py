"""Map the page's normalised touch points to device pixels, through size and rotation.

The page sends x, y in 0..1 of the picture it *displays*. Where that picture is the device's
own rotated video (scrcpy), device coordinates are simply those fractions of the current video
size. Where the picture stays in the natural orientation while the device UI turns (the
`screenrecord` fallback), the point must also be turned into the UI's rotated frame, which is
what `input tap` expects. One function covers both: `content_rotation` is how many degrees the
UI is turned relative to the displayed picture (0 for scrcpy).
"""

from __future__ import annotations


def to_device(
    x: float, y: float, width: int, height: int, content_rotation: int = 0
) -> tuple[int, int, int, int]:
    """Map (x, y) in 0..1 of a displayed `width` x `height` picture to device pixels.

    Returns (dx, dy, device_width, device_height), where the device frame is the displayed one
    turned by `content_rotation` degrees (clockwise, like Android's Surface.ROTATION_*).
    """
    x = min(1.0, max(0.0, x))
    y = min(1.0, max(0.0, y))
    rot = content_rotation % 360
    if rot == 0:
        u, v, w, h = x, y, width, height
    elif rot == 90:
        u, v, w, h = y, 1.0 - x, height, width
    elif rot == 180:
        u, v, w, h = 1.0 - x, 1.0 - y, width, height
    elif rot == 270:
        u, v, w, h = 1.0 - y, x, height, width
    else:
        raise ValueError(f"rotation must be a multiple of 90, not {content_rotation}")
    dx = min(w - 1, int(u * w))
    dy = min(h - 1, int(v * h))
    return dx, dy, w, h
