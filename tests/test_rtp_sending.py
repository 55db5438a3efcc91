"""Where the edge changes how aiortc sends RTP: its encoder lookup (pre-packetised pictures),
its NTP clock and the per-viewer send loop. Each must keep aiortc's behaviour for the rest."""

from __future__ import annotations

import functools
import struct

import pytest
from aiortc import RTCRtpSender, clock, rtcrtpsender
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
)
from aiortc.rtp import RtpPacket, unpack_header_extensions
from cloudphone.codecs import EncodedPacket
from cloudphone.edge import ntp_clock, packetizer, rtp_send_loop
from cloudphone.edge.playout_delay import (
    encode_playout_delay,
    send_playout_delay,
)

from benchmarks.rtp_send import CODEC as H264
from benchmarks.rtp_send import EXTENSIONS as EDGE_EXTENSIONS
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
    session = edge.only_session()
    sender = session.peer_connection.getSenders()[0]
    assert isinstance(sender._run_rtp, functools.partial)  # the lean loop is installed
    # written from the pipeline's publish (a plain UDP pair), and decodable: the client's
    # decoded frames above came through SRTP and RTP built there
    assert session.track.pictures_sent_directly >= 10
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


async def test_a_pair_aioice_does_not_drive_takes_the_queued_path(
    edge: Edge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct path writes through the nominated pair's aioice protocol; if that is not
    aioice's own (say, after an upgrade) it must decline and aiortc's coroutines send."""

    class NotAioicesProtocol:  # the direct path's test for aioice's protocol never matches
        pass

    monkeypatch.setattr(rtp_send_loop, "StunProtocol", NotAioicesProtocol)
    client = await edge.viewer(codec="h264")
    client.touch("down", 0.1, 0.5)
    await drag_until(client, lambda: client.frames_received >= 10)
    assert client.frames_received >= 10
    session = edge.only_session()
    assert session.track.packets_sent >= 10
    assert session.track.pictures_sent_directly == 0


class _Pictures(MediaStreamTrack):
    kind = "video"

    def __init__(self, pictures: list[packetizer.PacketizedPicture]) -> None:
        super().__init__()
        self._pictures = list(pictures)

    async def recv(self) -> packetizer.PacketizedPicture:  # type: ignore[override]
        if not self._pictures:
            raise MediaStreamError
        return self._pictures.pop(0)


class _KeepingTransport:
    """Stands in for the DTLS transport: keeps each RTP packet as it would be protected."""

    state = "connected"

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.append(data)


async def _sent_by(
    lean: bool, pictures: list[packetizer.PacketizedPicture]
) -> list[tuple[RtpPacket, dict[int, bytes]]]:
    """The packets a sender writes for `pictures`, parsed, and each one's extensions by id."""
    sender = RTCRtpSender(_Pictures(pictures), _KeepingTransport())  # type: ignore[arg-type]
    send_playout_delay(sender, 0, 100)
    header_map = sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined]
    header_map.configure(EDGE_EXTENSIONS)  # what a session negotiates
    sender._RTCRtpSender__mid = "0"  # type: ignore[attr-defined]
    if lean:
        assert rtp_send_loop.install(sender)
    await sender._run_rtp(H264)
    transport: _KeepingTransport = sender.transport  # type: ignore[assignment]
    return [(RtpPacket.parse(data, header_map), _extensions(data)) for data in transport.sent]


def _extensions(data: bytes) -> dict[int, bytes]:
    """The header extensions as sent (aiortc's parser drops the ones it does not know)."""
    assert data[0] & 0x10  # the extension bit; no CSRCs
    profile, words = struct.unpack_from("!HH", data, 12)
    return dict(unpack_header_extensions(profile, data[16 : 16 + 4 * words]))


async def test_the_lean_sender_writes_the_packets_aiortc_writes() -> None:
    """Same payloads, markers, extensions (mid, playout delay, a current abs-send-time) and
    timestamp steps; only the random origins differ. The extension block is a template whose
    abs-send-time bytes are patched per picture, so a wrong offset would show here."""
    packetizer.install()
    ntp_clock.install()
    pictures = [
        packetizer.PacketizedPicture(
            _packet(b"x", 3000 * i), [bytes([i, k]) * 600 for k in range(3)], 3000 * i
        )
        for i in range(1, 4)
    ]
    ours, theirs = await _sent_by(True, pictures), await _sent_by(False, pictures)
    assert len(ours) == len(theirs) == 9
    now = (clock.current_ntp_time() >> 14) & 0x00FFFFFF
    for (a, a_ext), (b, b_ext) in zip(ours, theirs, strict=True):
        assert (a.payload, a.marker, a.payload_type) == (b.payload, b.marker, b.payload_type)
        assert a.extensions.mid == b.extensions.mid == "0"
        assert a_ext.keys() == b_ext.keys() == {1, 2, 3}
        assert a_ext[3] == b_ext[3] == encode_playout_delay(0, 100)
        assert (now - a.extensions.abs_send_time) % 2**24 < 2**19  # under two seconds old
    for packets in ([p for p, _ in ours], [p for p, _ in theirs]):
        first = packets[0]
        assert [(p.sequence_number - first.sequence_number) % 2**16 for p in packets] == list(
            range(9)
        )
        assert [(p.timestamp - first.timestamp) % 2**32 for p in packets[::3]] == [0, 3000, 6000]
