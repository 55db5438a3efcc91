"""Just enough H.264 Annex-B to pass streams through: NAL splitting, SPS picture size.

The edge never decodes a passthrough stream, but it must know the picture size (servers 3.x
announce it only once, and a rotation shows up only as a new SPS) and must tell parameter sets
from slices to merge config packets into keyframes and to cut `screenrecord`'s byte stream
into access units.
"""

from __future__ import annotations

from collections.abc import Iterator

NAL_SLICE = 1
NAL_IDR = 5
NAL_SEI = 6
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9


def iter_nals(data: bytes) -> Iterator[tuple[int, int]]:
    """Yield (start, end) of each NAL unit payload (start codes excluded)."""
    n = len(data)
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        start = i + 3
        j = data.find(b"\x00\x00\x01", start)
        end = n if j == -1 else j
        # A 4-byte start code leaves a trailing zero on the previous NAL.
        if j != -1 and end > start and data[end - 1] == 0:
            end -= 1
        if end > start:
            yield start, end
        i = j


def nal_types(data: bytes) -> list[int]:
    return [data[s] & 0x1F for s, _ in iter_nals(data)]


def split_parameter_sets(data: bytes) -> tuple[bytes, bytes]:
    """(SPS/PPS NALs, everything else), each with 4-byte start codes: how MediaCodec emits them."""
    config = bytearray()
    rest = bytearray()
    for s, e in iter_nals(data):
        target = config if data[s] & 0x1F in (NAL_SPS, NAL_PPS) else rest
        target += b"\x00\x00\x00\x01" + data[s:e]
    return bytes(config), bytes(rest)


class _Bits:
    def __init__(self, rbsp: bytes) -> None:
        self.data = rbsp
        self.pos = 0

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise ValueError("SPS ended early")
        value = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _unescape(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def sps_size(sps_nal: bytes) -> tuple[int, int]:
    """Displayed (width, height) from one SPS NAL unit (header byte included), after cropping."""
    b = _Bits(_unescape(sps_nal[1:]))
    profile = b.bits(8)
    b.bits(16)  # constraint flags, level
    b.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format = b.ue()
        if chroma_format == 3:
            b.bit()  # separate_colour_plane_flag
        b.ue()  # bit_depth_luma
        b.ue()  # bit_depth_chroma
        b.bit()  # qpprime_y_zero_transform_bypass
        if b.bit():  # seq_scaling_matrix_present
            for i in range(8 if chroma_format != 3 else 12):
                if b.bit():
                    last, nxt = 8, 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + b.se() + 256) % 256
                        last = nxt or last
    b.ue()  # log2_max_frame_num_minus4
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.bit()
        b.se()
        b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue()  # max_num_ref_frames
    b.bit()  # gaps_in_frame_num_allowed
    width_mbs = b.ue() + 1
    height_units = b.ue() + 1
    frame_mbs_only = b.bit()
    if not frame_mbs_only:
        b.bit()
    b.bit()  # direct_8x8_inference
    width = width_mbs * 16
    height = height_units * 16 * (2 - frame_mbs_only)
    if b.bit():  # frame_cropping_flag
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
        crop_x = 2 if chroma_format in (1, 2) else 1
        crop_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    return width, height


def find_sps_size(data: bytes) -> tuple[int, int] | None:
    """Picture size from the first SPS in an Annex-B buffer, or None when there is none."""
    for s, e in iter_nals(data):
        if data[s] & 0x1F == NAL_SPS:
            return sps_size(data[s:e])
    return None
