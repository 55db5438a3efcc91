"""Reads a viewer's RTCP as it arrives, in the socket's callback, not through aiortc's task.

Why: in aiortc every datagram a viewer sends is first tried as a STUN message (aioice parses it
and raises), then queued for the DTLS transport's task, which wakes once per datagram and takes
it through four coroutine layers. Viewers mostly send RTCP, and some send a lot: an aiortc
receiver whose estimator sees overuse (a busy machine is enough) sends a REMB with every RTP
packet, tens a second per viewer (`benchmarks/fanout.py` records them). RTCP needs no ordering
with the DTLS records (SCTP) that share the socket, so on each of the connection's UDP sockets
the datagrams are told apart by their first byte, as RFC 7983 does (0-3 STUN, 20-63 DTLS,
128-191 RTP/RTCP; anything else, an empty datagram included, is dropped -- aiortc's DTLS task
dies on an empty one): RTCP is unprotected, parsed and routed right there -- keyframe requests and
bandwidth estimates go straight to the pipeline (aiortc's own handling of those only steers an
encoder we do not use), and what aiortc must still see (receiver reports for RTT and stats,
NACKs to retransmit, BYE) goes to its handlers as before. DTLS and RTP skip the STUN attempt and
take aiortc's queue; STUN takes aioice's path unchanged. A relayed candidate's protocol gets
what its TURN client unwrapped, and sorts it the same way.

A viewer's REMB is read at most every `REMB_MIN_INTERVAL_S`; the ones between are dropped before
decryption (a lone REMB's first two bytes are in the clear: PSFB, format 15). An estimate
replaces the previous one, so nothing is lost but up to 100 ms of timeliness -- Chrome paces
its own REMB to one per 200 ms unless the estimate falls by 3 % -- and a viewer that floods
RTCP costs a byte compare per datagram, not a decryption. Counted in `COUNTERS` (`/metrics`).

The state used is private to aiortc and aioice, so `receive_rtcp_on_arrival` checks it first
and keeps their path, with a warning, when something is missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pylibsrtp
from aioice.ice import StunProtocol
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, is_rtcp
from cloudphone.edge.rtcp_feedback import feedback_of

log = logging.getLogger(__name__)

_INSTALLED = "_cloudphone_rtcp_on_arrival"
_DTLS_STATE = (
    "_state",
    "_rx_srtp",
    "_rtp_router",
    "_RTCDtlsTransport__rx_bytes",
    "_RTCDtlsTransport__rx_packets",
)
_pending: set[asyncio.Task[None]] = set()  # aiortc handlers started from the arrival path
REMB_MIN_INTERVAL_S = 0.1
_PSFB = 206
_REMB_FORMAT = 15


@dataclass
class ArrivalCounters:
    """RTCP datagrams seen by the arrival path, process-wide (all viewers)."""

    read: int = 0  # unprotected and handled
    remb_paced: int = 0  # a REMB within REMB_MIN_INTERVAL_S of the viewer's last one: dropped
    unreadable: int = 0  # failed SRTCP authentication or parsing: dropped
    unsorted: int = 0  # any datagram that is no STUN, DTLS or RTP/RTCP (empty, say): dropped


COUNTERS = ArrivalCounters()


def receive_rtcp_on_arrival(dtls: RTCDtlsTransport) -> bool:
    """Read RTCP on `dtls`'s UDP sockets as it arrives (idempotent). False: aiortc's or aioice's
    internals are not as expected, and their receive path is kept."""
    if getattr(dtls, _INSTALLED, False):
        return True
    connection = getattr(getattr(dtls, "transport", None), "_connection", None)
    protocols = getattr(connection, "_protocols", None)
    missing = [name for name in _DTLS_STATE if not hasattr(dtls, name)]
    if connection is None or protocols is None or missing:
        log.warning("aiortc's DTLS transport is not as expected (%s): RTCP keeps its path", missing)
        return False
    for protocol in protocols:
        if type(protocol) is StunProtocol and hasattr(protocol, "local_candidate"):
            protocol.datagram_received = _demultiplexer(dtls, protocol)  # type: ignore[method-assign,assignment]
    setattr(dtls, _INSTALLED, True)
    return True


def _demultiplexer(
    dtls: RTCDtlsTransport, protocol: StunProtocol
) -> Callable[[bytes, tuple[Any, ...]], None]:
    stun = protocol.datagram_received
    queue = protocol.receiver.data_received  # aiortc's path: the DTLS transport's task
    component = protocol.local_candidate.component
    last_remb = -REMB_MIN_INTERVAL_S

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        nonlocal last_remb
        first = data[0] if data else -1
        if 127 < first < 192:
            if (
                component == 1
                and is_rtcp(data)
                and dtls._state == DtlsState.CONNECTED
                and dtls._rx_srtp is not None
            ):
                if first & 0x1F == _REMB_FORMAT and data[1] == _PSFB:
                    now = time.monotonic()
                    if now - last_remb < REMB_MIN_INTERVAL_S:
                        COUNTERS.remb_paced += 1
                        return
                    last_remb = now
                try:
                    handle_rtcp(dtls, data)
                except Exception:  # raised into the socket's callback, it would close the socket
                    log.exception("handling a viewer's RTCP failed")
            else:
                queue(data, component)
        elif 19 < first < 64:
            queue(data, component)  # DTLS: never STUN, so skip aioice's attempt at parsing it
        elif 0 <= first < 4:
            stun(data, addr)
        else:  # empty, or in no range RFC 7983 assigns; an empty one kills aiortc's DTLS task
            COUNTERS.unsorted += 1
            log.debug("dropping a %d-byte datagram from %s: no STUN, DTLS or RTP", len(data), addr)

    return datagram_received


def handle_rtcp(dtls: RTCDtlsTransport, data: bytes) -> None:
    """What `RTCDtlsTransport._recv_next` and `_handle_rtcp_data` do with one RTCP datagram."""
    dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
    dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
    try:
        packets = RtcpPacket.parse(dtls._rx_srtp.unprotect_rtcp(data))
    except (pylibsrtp.Error, ValueError) as exc:
        COUNTERS.unreadable += 1
        log.debug("dropping an RTCP datagram: %s", exc)
        return
    COUNTERS.read += 1
    for packet in packets:
        for recipient in dtls._rtp_router.route_rtcp(packet):
            feedback = feedback_of(recipient)
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
