"""The video demuxer over byte streams shaped exactly like scrcpy-server's output."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
from cloudphone.codecs import EncoderConfig, create_encoder
from cloudphone.vm.android import annexb
from cloudphone.vm.android.scrcpy_protocol import (
    CODEC_H264,
    ProtocolError,
    ServerVersion,
    Session,
    encode_frame_header,
    encode_session,
)
from cloudphone.vm.android.stream import StreamEnded, VideoDemuxer, VideoPacket
from cloudphone.vm.guest import RawFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

V3 = ServerVersion.parse("3.3.4")
V4 = ServerVersion.parse("4.1")


def _encode(w: int, h: int, n: int) -> list[tuple[bytes, bool]]:
    enc = create_encoder(EncoderConfig("h264", w, h, 30))
    out = []
    for i in range(n):
        pic = np.full((h * 3 // 2, w), (i * 20) % 255, dtype=np.uint8)
        out += [(p.data, p.keyframe) for p in enc.encode(RawFrame(pic, "yuv420p", 0.0), i, i == 0)]
    enc.close()
    return out


def _session_bytes(
    version: ServerVersion, w: int, h: int, frames: list[tuple[bytes, bool]], first: bool
) -> bytes:
    out = bytearray()
    if version.has_session_packets:
        out += encode_session(Session(w, h))
    elif first:
        out += struct.pack(">II", w, h)
    for i, (data, key) in enumerate(frames):
        if key:
            config, data = annexb.split_parameter_sets(data)
            if i == 0:
                out += encode_frame_header(len(config), version, config=True) + config
        out += encode_frame_header(len(data), version, pts=i * 33_333, keyframe=key) + data
    return bytes(out)


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def _drain(demuxer: VideoDemuxer) -> list[Session | VideoPacket]:
    items: list[Session | VideoPacket] = []
    with pytest.raises(StreamEnded):
        while True:
            items.append(await demuxer.next())
    return items


@pytest.mark.parametrize("version", [V3, V4], ids=["3.x", "4.x"])
async def test_sessions_config_merge_and_rotation(version: ServerVersion) -> None:
    portrait = _encode(160, 288, 4)
    landscape = _encode(288, 160, 3)
    stream = (
        struct.pack(">I", CODEC_H264)
        + _session_bytes(version, 160, 288, portrait, True)
        + _session_bytes(version, 288, 160, landscape, False)
    )
    demuxer = VideoDemuxer(_reader(stream), version)
    assert await demuxer.read_codec() == "h264"
    items = await _drain(demuxer)
    sessions = [i for i in items if isinstance(i, Session)]
    packets = [i for i in items if isinstance(i, VideoPacket)]
    # 3.x learns the rotation from the new SPS; 4.x from the session packet.
    assert [(s.width, s.height) for s in sessions] == [(160, 288), (288, 160)]
    assert len(packets) == 7
    keyframes = [p for p in packets if p.keyframe]
    assert len(keyframes) == 2
    for key in keyframes:
        # Config merged in front of the IDR: a viewer can start here.
        types = annexb.nal_types(key.data)
        assert types[:2] == [annexb.NAL_SPS, annexb.NAL_PPS] and annexb.NAL_IDR in types
    assert annexb.find_sps_size(keyframes[1].data) == (288, 160)
    assert all(annexb.NAL_SPS not in annexb.nal_types(p.data) for p in packets if not p.keyframe)
    assert packets[1].pts == 33_333
    # The passthrough bytes decode as a real stream.
    import av

    decoder = av.CodecContext.create("h264", "r")
    sizes = []
    for p in packets:
        for frame in decoder.decode(av.Packet(p.data)):
            sizes.append((frame.width, frame.height))
    for frame in decoder.decode(None):
        sizes.append((frame.width, frame.height))
    assert sizes[0] == (160, 288) and sizes[-1] == (288, 160) and len(sizes) == 7


async def test_later_keyframe_without_parameter_sets_gets_cached_ones() -> None:
    frames = _encode(160, 288, 2)
    idr = frames[0][0]
    config, bare = annexb.split_parameter_sets(idr)
    stream = (
        struct.pack(">III", CODEC_H264, 160, 288)
        + encode_frame_header(len(config), V3, config=True)
        + config
        + encode_frame_header(len(bare), V3, keyframe=True)
        + bare
        + encode_frame_header(len(bare), V3, pts=5, keyframe=True)  # periodic IDR, no SPS/PPS
        + bare
    )
    demuxer = VideoDemuxer(_reader(stream), V3)
    await demuxer.read_codec()
    items = await _drain(demuxer)
    packets = [i for i in items if isinstance(i, VideoPacket)]
    assert packets[0].data == packets[1].data == config + bare


async def test_unknown_codec_id() -> None:
    demuxer = VideoDemuxer(_reader(struct.pack(">III", 0x12345678, 10, 10)), V3)
    with pytest.raises(ProtocolError, match="unknown video codec id 0x12345678"):
        await demuxer.read_codec()


@pytest.mark.parametrize(
    ("tail", "match"),
    [
        (b"\x00\x00\x00\x00\x00", "truncated packet header"),
        (struct.pack(">QI", 1 << 62, 0x7FFFFFFF), "absurd media packet size"),
        (struct.pack(">QI", 0, 100) + b"x" * 10, "truncated packet payload"),
    ],
)
async def test_bad_input_is_a_protocol_error(tail: bytes, match: str) -> None:
    demuxer = VideoDemuxer(_reader(struct.pack(">III", CODEC_H264, 320, 640) + tail), V3)
    await demuxer.read_codec()
    assert await demuxer.next() == Session(320, 640)
    with pytest.raises(ProtocolError, match=match):
        await demuxer.next()


async def test_absurd_initial_size_and_media_before_session() -> None:
    demuxer = VideoDemuxer(_reader(struct.pack(">III", CODEC_H264, 0, 640)), V3)
    with pytest.raises(ProtocolError, match="absurd video size"):
        await demuxer.read_codec()
    demuxer = VideoDemuxer(
        _reader(struct.pack(">I", CODEC_H264) + struct.pack(">QI", 0, 4) + b"abcd"), V4
    )
    await demuxer.read_codec()
    with pytest.raises(ProtocolError, match="before any session"):
        await demuxer.next()


async def test_disabled_and_failed_streams() -> None:
    from cloudphone.vm.android.stream import AudioDemuxer, StreamDisabled

    with pytest.raises(StreamDisabled, match="disabled the video stream") as info:
        await VideoDemuxer(_reader(b"\x00\x00\x00\x00"), V3).read_codec()
    assert not info.value.error
    with pytest.raises(StreamDisabled, match="audio configuration error") as info:
        await AudioDemuxer(_reader(b"\x00\x00\x00\x01"), V4).read_codec()
    assert info.value.error


@pytest.mark.parametrize("version", [V3, V4], ids=["3.x", "4.x"])
async def test_audio_demuxer_skips_the_opus_head(version: ServerVersion) -> None:
    from cloudphone.vm.android.scrcpy_protocol import CODEC_OPUS
    from cloudphone.vm.android.stream import AudioDemuxer

    head = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
    stream = (
        struct.pack(">I", CODEC_OPUS)
        + encode_frame_header(len(head), version, config=True)
        + head
        + encode_frame_header(3, version, pts=20_000)
        + b"\xfc\xff\xfe"
        + encode_frame_header(3, version, pts=40_000)
        + b"\xfc\xff\xfd"
    )
    demuxer = AudioDemuxer(_reader(stream), version)
    assert await demuxer.read_codec() == "opus"
    first, second = await demuxer.next(), await demuxer.next()
    assert (first.data, first.pts_us) == (b"\xfc\xff\xfe", 20_000)
    assert second.pts_us == 40_000
    with pytest.raises(StreamEnded):
        await demuxer.next()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(garbage=st.binary(max_size=200), version=st.sampled_from([V3, V4]))
async def test_any_garbage_after_the_codec_id_is_a_clean_error(
    garbage: bytes, version: ServerVersion
) -> None:
    """Whatever a broken device sends, the demuxer ends in ProtocolError or StreamEnded."""
    head = struct.pack(">I", CODEC_H264) + (
        b"" if version.has_session_packets else struct.pack(">II", 64, 64)
    )
    demuxer = VideoDemuxer(_reader(head + garbage), version)
    await demuxer.read_codec()
    with pytest.raises((ProtocolError, StreamEnded)):
        for _ in range(100):
            await demuxer.next()


@settings(max_examples=200, deadline=None)
@given(garbage=st.binary(max_size=64))
def test_device_message_parser_never_crashes(garbage: bytes) -> None:
    from cloudphone.vm.android.scrcpy_protocol import parse_device_message

    buf = bytearray(garbage)
    try:
        while buf:
            msg, used = parse_device_message(buf)
            if msg is None:
                break
            assert used > 0
            del buf[:used]
    except ProtocolError:
        pass
