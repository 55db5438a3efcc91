"""Our encoders produce what browsers need: baseline H.264 with SPS/PPS on every IDR, VP8."""

from __future__ import annotations

import time

import av
import numpy as np
import pytest
from cloudphone.codecs import EncoderConfig, create_encoder
from cloudphone.codecs.h264 import h264_level
from cloudphone.codecs.worker import EncoderWorker
from cloudphone.vm.guest import RawFrame


def _frame(i: int, width: int = 320, height: int = 480) -> RawFrame:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : (i * 7) % width] = (200, 40, 40)
    return RawFrame(image, "rgb24", time.monotonic(), i)


def _nal_types(data: bytes) -> list[int]:
    out, i = [], 0
    while (i := data.find(b"\x00\x00\x01", i)) != -1:
        out.append(data[i + 3] & 0x1F)
        i += 3
    return out


def test_h264_is_constrained_baseline_with_parameter_sets_on_every_idr() -> None:
    encoder = create_encoder(EncoderConfig("h264", 320, 480, 30, 500_000))
    first = encoder.encode(_frame(0), 0)[0]
    assert first.keyframe and _nal_types(first.data)[:2] == [7, 8]
    sps = first.data[first.data.find(b"\x67") :]
    assert sps[1] == 66, "profile_idc must be baseline"
    for i in range(1, 5):
        assert not encoder.encode(_frame(i), i * 3000)[0].keyframe
    forced = encoder.encode(_frame(5), 5 * 3000, force_keyframe=True)[0]
    assert forced.keyframe and {7, 8, 5} <= set(_nal_types(forced.data))
    encoder.close()


@pytest.mark.parametrize("codec", ["h264", "vp8"])
def test_bitrate_change_takes_effect_without_a_new_encoder(codec: str) -> None:
    rng = np.random.default_rng(1)
    noise = (rng.integers(0, 255, (480, 320, 3), dtype=np.uint8) // 32 * 32).astype(np.uint8)
    encoder = create_encoder(EncoderConfig(codec, 320, 480, 30, 2_000_000, min_bitrate=100_000))

    def second(start: int) -> int:
        total = 0
        for i in range(start, start + 30):
            image = np.roll(noise, i * 5, axis=1)
            total += sum(
                len(p.data) for p in encoder.encode(RawFrame(image, "rgb24", 0.0), i * 3000)
            )
        return total * 8

    second(0)
    high = second(30)
    encoder.set_bitrate(200_000)
    second(60)
    low = second(90)
    assert encoder.bitrate == 200_000
    assert low < high * 0.5, (high, low)
    encoder.close()


def test_decoded_output_matches_input_size() -> None:
    for codec, name in (("h264", "h264"), ("vp8", "vp8")):
        encoder = create_encoder(EncoderConfig(codec, 320, 480))
        decoder = av.CodecContext.create(name, "r")
        frames = []
        for i in range(3):
            for packet in encoder.encode(_frame(i), i * 3000):
                frames += decoder.decode(av.Packet(packet.data))
        frames += decoder.decode(None)
        encoder.close()
        assert frames and (frames[-1].width, frames[-1].height) == (320, 480)


def test_h264_level_fits_size_and_rate() -> None:
    assert h264_level(720, 1280, 30) == "3.1"
    assert h264_level(720, 1280, 60) == "3.2"
    assert h264_level(1080, 1920, 30) == "4.0"
    assert h264_level(1080, 1920, 60) == "4.2"


def test_worker_newest_picture_wins_and_keyframe_on_demand() -> None:
    out: list = []
    worker = EncoderWorker(
        create_encoder(EncoderConfig("h264", 320, 480)), out.extend, idle_refresh_s=60
    )
    try:
        for i in range(50):  # far faster than it can encode: most are replaced while waiting
            worker.submit(_frame(i))
        deadline = time.monotonic() + 10
        while worker.stats.encoded + worker.stats.dropped < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.stats.dropped > 0
        assert out[-1].input_seq == 49, "the newest picture must be the last one encoded"
        count = len(out)
        worker.request_keyframe()  # no new picture: the last one is re-encoded as an IDR
        while len(out) == count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert out[-1].keyframe
    finally:
        worker.stop()
    assert not worker.alive
