"""The two places where the edge changes how aiortc sends RTP: its encoder lookup (pre-packetised
pictures) and its NTP clock. Both must keep aiortc's own behaviour for everything else."""

from __future__ import annotations

from aiortc import clock, rtcrtpsender
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from cloudphone.codecs import EncodedPacket
from cloudphone.edge import ntp_clock, packetizer


def test_ntp_clock_matches_aiortcs_datetime_clock() -> None:
    reference = clock.datetime_to_ntp(clock.current_datetime())
    ours = ntp_clock.current_ntp_time()
    assert abs(ours - reference) / 2**32 < 0.05  # seconds apart: the two calls, nothing more
    ntp_clock.install()
    assert clock.current_ntp_time is ntp_clock.current_ntp_time


def _packet(data: bytes, pts: int) -> EncodedPacket:
    return EncodedPacket(data, "h264", True, pts, 720, 1280, 0.0, 0.0)


def test_video_senders_get_prepacketised_payloads_and_audio_keeps_aiortcs_encoder() -> None:
    packetizer.install()
    h264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2)
    video = rtcrtpsender.get_encoder(h264)
    assert isinstance(video, packetizer.PrepacketizedEncoder)
    assert isinstance(rtcrtpsender.get_encoder(opus), OpusEncoder)

    access_unit = b"\x00\x00\x00\x01\x67" + b"\x11" * 20 + b"\x00\x00\x00\x01\x65" + b"\x22" * 4000
    stream = packetizer.StreamPacketizer("h264")
    item = _packet(access_unit, 3000)
    picture = stream.packetize(item)
    assert stream.packetize(item) is picture  # a second viewer: same payloads, no new work
    assert stream.pictures_packetized == 1
    # exactly what aiortc's own packetiser makes of the same access unit
    expected = H264Encoder().pack(packetizer.as_av_packet(item))
    assert (picture.payloads, picture.timestamp) == expected
    assert video.pack(picture) == expected
