"""Viewer feedback the pipeline must hear itself: PLI -> keyframe, REMB -> bitrate."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci
from cloudphone.edge import rtcp_arrival
from cloudphone.edge.bitrate import BitrateController

from tests.conftest import Edge, drag_until, eventually


def test_bitrate_follows_the_weakest_viewer_with_hysteresis() -> None:
    now = [0.0]
    applied: list[int] = []
    ctl = BitrateController(2_000_000, 300_000, 4_000_000, applied.append, clock=lambda: now[0])
    ctl.report("a", 10_000_000)
    assert applied == [] or applied[-1] <= 4_000_000
    now[0] = 10
    ctl.report("a", 10_000_000)
    assert ctl.current == 4_000_000, "clamped to the maximum"
    for i in range(60):  # the stream sends at its target (30 fps): drops are believed
        now[0] = 9 + i / 30
        ctl.note_sent(4_000_000 // 8 // 30)
    now[0] = 11
    ctl.report("b", 3_800_000)  # small move (< 25 %) soon after: ignored
    assert ctl.current == 4_000_000
    ctl.report("b", 1_000_000)  # a sharp drop is applied at once
    assert ctl.current == 850_000
    now[0] = 12
    ctl.forget("b")  # the weak viewer left; going up waits for the spacing
    assert ctl.current == 850_000
    now[0] = 20
    ctl.report("a", 10_000_000)
    assert ctl.current == 4_000_000
    for i in range(60):
        now[0] = 20 + i / 30
        ctl.note_sent(4_000_000 // 8 // 30)
    ctl.report("a", 10)
    assert ctl.current == 300_000, "clamped to the minimum"
    assert applied[-1] == 300_000


def test_an_idle_stream_keeps_its_bitrate_when_the_estimate_only_saw_a_trickle() -> None:
    now = [0.0]
    ctl = BitrateController(2_500_000, 300_000, 8_000_000, lambda bps: None, clock=lambda: now[0])
    for i in range(10):  # a still screen: one small refresh a second
        now[0] = float(i)
        ctl.note_sent(3_000)
    assert ctl.sent_bps() == 2 * 3_000 * 8 / 2.0
    ctl.report("viewer", 20_000)  # "0.85 x what arrived" after a keyframe burst
    assert ctl.current == 2_500_000
    ctl.report("viewer", 5_000_000)  # a raise is still taken
    assert ctl.current == 4_250_000
    for i in range(60):  # busy again, sending at the target: now a drop is real congestion
        now[0] = 20 + i / 30
        ctl.note_sent(4_250_000 // 8 // 30)
    ctl.report("viewer", 1_000_000)
    assert ctl.current == 850_000


async def test_pli_from_a_viewer_forces_a_keyframe(edge: Edge) -> None:
    client = await edge.viewer(codec="h264")
    await client.wait_for_frame(lambda f: True)
    pipeline = edge.node.pipeline("phone-1")
    worker = pipeline._streams["h264"].worker
    assert worker is not None
    await eventually(lambda: worker.stats.keyframes >= 1)
    before = worker.stats.keyframes
    receiver = client.pc.getReceivers()[0]
    track = edge.only_session().peer_connection.getSenders()[0]
    await receiver._send_rtcp_pli(track._ssrc)  # what a browser sends after a decode error
    await eventually(lambda: worker.stats.keyframes > before)


async def test_remb_from_a_viewer_reaches_the_bitrate_controller(edge: Edge) -> None:
    client = await edge.viewer(codec="vp8")
    client.touch("down", 0.2, 0.2)
    stream = edge.node.pipeline("phone-1")._streams["vp8"]
    assert stream.bitrate is not None
    controller = stream.bitrate
    for i in range(200):  # aiortc's receiver estimates bandwidth from arriving media
        if controller._estimates:
            break
        client.touch("move", 0.2 + (i % 50) / 100, 0.3)
        await asyncio.sleep(0.03)
    assert controller._estimates, "no REMB reached the pipeline"


async def test_viewer_rtcp_is_read_on_arrival_and_aiortc_still_sees_reports_and_nacks(
    edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    """The arrival path (`rtcp_arrival`) reads RTCP in the socket callback; receiver
    reports must still reach aiortc (RTT, stats), NACKs must still be retransmitted, and a
    forged or garbled RTCP datagram is dropped without hurting the session."""
    client = await edge.viewer(codec="h264")
    client.touch("down", 0.1, 0.5)
    await drag_until(client, lambda: client.frames_received >= 5)
    session = edge.only_session()
    sender = session.peer_connection.getSenders()[0]
    dtls = sender.transport
    await eventually(lambda: getattr(dtls, "_cloudphone_rtcp_on_arrival", False))
    protocols = dtls.transport._connection._protocols
    assert all(p.datagram_received.__qualname__.startswith("_demultiplexer") for p in protocols)

    async def remote_inbound() -> bool:
        stats = await sender.getStats()
        return any(s.type == "remote-inbound-rtp" for s in stats.values())

    for _ in range(100):  # aiortc's receiver reports come every 0.5-1.5 s
        if await remote_inbound():
            break
        await asyncio.sleep(0.05)
    assert await remote_inbound(), "no receiver report reached aiortc"

    history = sender._RTCRtpSender__rtp_history  # type: ignore[attr-defined]
    lost = next(iter(history.values())).sequence_number
    before = dtls._RTCDtlsTransport__tx_packets  # type: ignore[attr-defined]
    receiver = client.pc.getReceivers()[0]
    await receiver._send_rtcp_nack(sender._ssrc, [lost])
    await eventually(lambda: dtls._RTCDtlsTransport__tx_packets > before)  # type: ignore[attr-defined]

    caplog.set_level(logging.DEBUG, logger="cloudphone.edge.rtcp_arrival")
    client_ice = client.pc.getReceivers()[0].transport.transport._connection
    await client_ice.send(b"\x81\xc9\x00\x07" + bytes(40))  # RTCP-shaped, not SRTP-protected
    frames = client.frames_received
    await drag_until(client, lambda: client.frames_received >= frames + 5)
    assert session.peer_connection.connectionState == "connected"
    assert "dropping an RTCP datagram" in caplog.text


async def test_a_viewers_remb_is_read_at_most_every_100_ms(edge: Edge) -> None:
    """REMBs closer together than `REMB_MIN_INTERVAL_S` are dropped before decryption: a
    viewer flooding them (aiortc receivers send one per RTP packet when they see overuse)
    costs a byte compare each, and the estimate read is the first of each interval."""
    client = await edge.viewer(codec="h264")
    receiver = client.pc.getReceivers()[0]
    receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
    client.touch("down", 0.1, 0.5)
    await drag_until(client, lambda: client.frames_received >= 3)
    session = edge.only_session()
    ssrc = session.peer_connection.getSenders()[0]._ssrc
    controller = edge.node.pipeline("phone-1")._streams["h264"].bitrate
    assert controller is not None
    await eventually(lambda: getattr(session.peer_connection.getSenders()[0].transport,
                                     "_cloudphone_rtcp_on_arrival", False))  # fmt: skip

    def remb(bitrate: int) -> RtcpPsfbPacket:
        rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        fci = pack_remb_fci(bitrate, [ssrc])
        return RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci)

    await asyncio.sleep(rtcp_arrival.REMB_MIN_INTERVAL_S)
    paced, read = rtcp_arrival.COUNTERS.remb_paced, rtcp_arrival.COUNTERS.read
    for i in range(10):
        await receiver._send_rtcp(remb(3_000_000 + 1000 * i))
    await eventually(lambda: rtcp_arrival.COUNTERS.remb_paced >= paced + 9)
    assert rtcp_arrival.COUNTERS.read >= read + 1  # the first (and any receiver report)
    assert controller._estimates[session.track] == 3_000_000  # the first of the burst

    await asyncio.sleep(rtcp_arrival.REMB_MIN_INTERVAL_S)
    await receiver._send_rtcp(remb(2_000_000))  # the next interval's: read
    await eventually(lambda: controller._estimates[session.track] == 2_000_000)

    text = await (await edge.http.get(edge.url("/metrics"))).text()
    assert 'cloudphone_rtcp_in_total{outcome="remb_paced"}' in text


async def test_garbage_on_a_viewers_socket_is_sorted_and_dropped(edge: Edge) -> None:
    """Datagrams of every shape (STUN-, DTLS-, RTP- and RTCP-looking, empty, huge) fed to the
    edge's socket callback: none raises into the socket (that would close it), forged RTCP is
    counted unreadable, and the viewer keeps streaming."""
    client = await edge.viewer(codec="h264")
    client.touch("down", 0.1, 0.5)
    await drag_until(client, lambda: client.frames_received >= 3)
    session = edge.only_session()
    dtls = session.peer_connection.getSenders()[0].transport
    await eventually(lambda: getattr(dtls, "_cloudphone_rtcp_on_arrival", False))
    (protocol,) = [p for p in dtls.transport._connection._protocols if p.transport is not None]
    unreadable, unsorted = rtcp_arrival.COUNTERS.unreadable, rtcp_arrival.COUNTERS.unsorted
    rng = random.Random(7)
    for i in range(600):
        first = rng.choice([0, 1, 20, 23, 63, 64, 127, 128, 0x80 | rng.randrange(32), 0xBF, 255])
        second = rng.choice([0, 96, 192, 200, 201, 205, 206, 208, 223, 255])
        body = rng.randbytes(rng.choice([0, 1, 6, 30, 200, 1400]))
        datagram = bytes([first, second]) + body if i % 50 else b""
        protocol.datagram_received(datagram, ("127.0.0.1", 9))
    assert rtcp_arrival.COUNTERS.unreadable > unreadable
    assert rtcp_arrival.COUNTERS.unsorted > unsorted  # the empty ones among them
    frames = client.frames_received
    await drag_until(client, lambda: client.frames_received >= frames + 5)
    assert session.peer_connection.connectionState == "connected"
