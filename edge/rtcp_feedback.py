"""Hooks the RTCP feedback aiortc swallows when a track hands it pre-encoded packets, and reads
viewers' RTCP as it arrives instead of through aiortc's receive task.

`RTCRtpSender` reads PLI only to set a flag for *its own* encoder, and REMB only to steer that
encoder; with `av.Packet`s from our pipeline neither reaches us (FIELD-NOTES). aiortc exposes no
public hook, so `watch_feedback` wraps the sender's `_handle_rtcp_packet` on the instance: the
DTLS transport looks the method up per packet, and the original still runs (RTT, stats).

Why `receive_rtcp_on_arrival`: in aiortc every datagram a viewer sends goes through aioice's
queue into the DTLS transport's task, which wakes once per datagram. Viewers mostly send RTCP,
and some send a lot: an aiortc receiver whose estimator sees overuse (a busy machine is enough)
sends a REMB with every RTP packet -- 35 a second per viewer, measured in
`benchmarks/fanout.py`, each costing a task switch and four coroutine layers. RTCP needs no
ordering with the DTLS records (SCTP) that share the socket, so on the nominated connection it
is unprotected, parsed and routed right in aioice's `data_received` callback: keyframe requests
and bandwidth estimates go to the pipeline there and then (aiortc's own handling of those only
steers an encoder we do not use), and what aiortc must still see (receiver reports for RTT and
stats, NACKs to retransmit, BYE) is handed to its handlers as before. Everything else -- DTLS
handshake, SCTP, RTP from the viewer -- takes aiortc's path unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pylibsrtp
from aiortc import RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPacket,
    RtcpPsfbPacket,
    is_rtcp,
    unpack_remb_fci,
)

log = logging.getLogger(__name__)

_FEEDBACK = "_cloudphone_feedback"  # the `_Feedback` of a watched sender
_INSTALLED = "_cloudphone_rtcp_on_arrival"
_DTLS_STATE = (
    "_state",
    "_rx_srtp",
    "_rtp_router",
    "_RTCDtlsTransport__rx_bytes",
    "_RTCDtlsTransport__rx_packets",
)
_pending: set[asyncio.Task[None]] = set()  # aiortc handlers started from the arrival path


class _Feedback:
    """What one watched sender does with keyframe requests and bandwidth estimates."""

    def __init__(
        self,
        sender: RTCRtpSender,
        on_keyframe_request: Callable[[], None],
        on_bandwidth_estimate: Callable[[int], None],
    ) -> None:
        self._sender = sender
        self._on_keyframe_request = on_keyframe_request
        self._on_bandwidth_estimate = on_bandwidth_estimate

    def handle(self, packet: RtcpPsfbPacket) -> None:
        if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self._on_keyframe_request()
        elif packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                log.debug("ignoring a non-REMB application feedback packet")
            else:
                if self._sender._ssrc in ssrcs:
                    self._on_bandwidth_estimate(bitrate)


def watch_feedback(
    sender: RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_bandwidth_estimate: Callable[[int], None],
) -> None:
    feedback = _Feedback(sender, on_keyframe_request, on_bandwidth_estimate)
    original = sender._handle_rtcp_packet

    async def handle(packet: object) -> None:
        if isinstance(packet, RtcpPsfbPacket):
            feedback.handle(packet)
        await original(packet)  # type: ignore[arg-type]

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]
    setattr(sender, _FEEDBACK, feedback)


def receive_rtcp_on_arrival(dtls: RTCDtlsTransport) -> bool:
    """Read RTCP on `dtls`'s ICE connection as it arrives (idempotent). False: aiortc's
    internals are not as expected, and its own receive path is kept."""
    if getattr(dtls, _INSTALLED, False):
        return True
    connection = getattr(getattr(dtls, "transport", None), "_connection", None)
    missing = [name for name in _DTLS_STATE if not hasattr(dtls, name)]
    if connection is None or missing or not hasattr(connection, "data_received"):
        log.warning("aiortc's DTLS transport is not as expected (%s): RTCP keeps its path", missing)
        return False
    queued = connection.data_received

    def data_received(data: bytes, component: int) -> None:
        if (
            component == 1
            and 127 < data[0] < 192
            and is_rtcp(data)
            and dtls._state == DtlsState.CONNECTED
            and dtls._rx_srtp is not None
        ):
            _handle_rtcp(dtls, data)
        else:
            queued(data, component)

    connection.data_received = data_received
    setattr(dtls, _INSTALLED, True)
    return True


def _handle_rtcp(dtls: RTCDtlsTransport, data: bytes) -> None:
    """What `RTCDtlsTransport._recv_next` and `_handle_rtcp_data` do with one RTCP datagram."""
    dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
    dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
    try:
        packets = RtcpPacket.parse(dtls._rx_srtp.unprotect_rtcp(data))
    except (pylibsrtp.Error, ValueError) as exc:
        log.debug("dropping an RTCP datagram: %s", exc)
        return
    router = dtls._rtp_router
    for packet in packets:
        for recipient in router.route_rtcp(packet):
            feedback: _Feedback | None = getattr(recipient, _FEEDBACK, None)
            if feedback is not None and isinstance(packet, RtcpPsfbPacket):
                feedback.handle(packet)  # all aiortc would do with it is steer its own encoder
            else:
                _start(recipient._handle_rtcp_packet(packet))


def _start(handler: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(handler)
    _pending.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Task[None]) -> None:
    _pending.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("RTCP handler failed", exc_info=task.exception())
