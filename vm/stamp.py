"""The latency probe: a machine-readable block pattern stamped into a frame.

A strip of `BLOCKS` black/white blocks across the top of the picture carries the frame counter
and the sequence number of the last input applied. Blocks are big (W/40 wide, H/80 tall) so the
pattern survives H.264/VP8 at low bitrates and any scaling: a reader samples each block's centre
and thresholds the luma. The same layout is decoded in the browser (`static/h5/stamp.js`).

Layout of the 40 bits: `1 0` sync, 16 bits input sequence, 16 bits frame counter, 4 bits
checksum (XOR of the eight nibbles), `0 1` sync. Most significant bit first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCKS = 40
STRIP_ROWS_DIVISOR = 80  # strip height = H / 80 (16 px at 1280)


@dataclass(frozen=True, slots=True)
class Stamp:
    input_seq: int
    frame: int


def strip_height(height: int) -> int:
    return max(4, height // STRIP_ROWS_DIVISOR)


def _checksum(input_seq: int, frame: int) -> int:
    value = ((input_seq & 0xFFFF) << 16) | (frame & 0xFFFF)
    c = 0
    for shift in range(0, 32, 4):
        c ^= (value >> shift) & 0xF
    return c


def stamp_bits(input_seq: int, frame: int) -> list[int]:
    bits = [1, 0]
    bits += [(input_seq >> (15 - i)) & 1 for i in range(16)]
    bits += [(frame >> (15 - i)) & 1 for i in range(16)]
    c = _checksum(input_seq, frame)
    bits += [(c >> (3 - i)) & 1 for i in range(4)]
    bits += [0, 1]
    return bits


def draw_stamp(image: np.ndarray, input_seq: int, frame: int) -> None:
    """Write the stamp into an H x W x C uint8 image, in place."""
    height, width = image.shape[:2]
    rows = strip_height(height)
    for i, bit in enumerate(stamp_bits(input_seq & 0xFFFF, frame & 0xFFFF)):
        x0 = i * width // BLOCKS
        x1 = (i + 1) * width // BLOCKS
        image[:rows, x0:x1] = 255 if bit else 0


def read_stamp(image: np.ndarray) -> Stamp | None:
    """Decode the stamp from an H x W x C (or H x W luma) image; None if absent or corrupt."""
    height, width = image.shape[:2]
    y = strip_height(height) // 2
    row = image[y]
    if row.ndim == 2:
        row = row[:, :3].mean(axis=1)
    bits = [1 if float(row[int((i + 0.5) * width / BLOCKS)]) > 127 else 0 for i in range(BLOCKS)]
    if bits[:2] != [1, 0] or bits[-2:] != [0, 1]:
        return None
    seq = int("".join(map(str, bits[2:18])), 2)
    frame = int("".join(map(str, bits[18:34])), 2)
    check = int("".join(map(str, bits[34:38])), 2)
    if check != _checksum(seq, frame):
        return None
    return Stamp(input_seq=seq, frame=frame)
