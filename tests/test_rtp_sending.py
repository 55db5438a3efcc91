"""Where the edge changes how aiortc sends RTP: its encoder lookup (pre-packetised pictures),
its NTP clock and the per-viewer send loop. Each must keep aiortc's behaviour for the rest."""

from __future__ import annotations

import functools

from aiortc import clock, rtcrtpsender
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from cloudphone.codecs import EncodedPacket
from cloudphone.edge import ntp_clock, packetizer

from tests.conftest import Edge, drag_until, eventually


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


async def test_the_lean_rtp_loop_keeps_aiortcs_sender_state(edge: Edge) -> None:
    """Sender reports, NACK retransmissions and stop() rely on state the loop must keep."""
    client = await edge.viewer(codec="h264")
    client.touch("down", 0.1, 0.5)
    await drag_until(client, lambda: client.frames_received >= 15)
    assert client.frames_received >= 15
    session = edge.node.sessions[next(iter(edge.node.sessions))]
    sender = session.peer_connection.getSenders()[0]
    assert isinstance(sender._run_rtp, functools.partial)  # the lean loop is installed
    stats = await sender.getStats()
    outbound = next(s for s in stats.values() if s.type == "outbound-rtp")
    assert outbound.packetsSent >= 15 and outbound.bytesSent > 1000
    history: dict[int, RtpPacket] = sender._RTCRtpSender__rtp_history  # type: ignore[attr-defined]
    assert history
    packet = next(iter(history.values()))
    dtls = sender.transport
    before = dtls._RTCDtlsTransport__tx_packets  # type: ignore[attr-defined]
    await sender._retransmit(packet.sequence_number)  # what a NACK for that packet triggers
    assert dtls._RTCDtlsTransport__tx_packets == before + 1  # type: ignore[attr-defined]
    await client.close()
    await eventually(lambda: not edge.node.sessions)  # stop() saw the loop exit
