"""Hooks the RTCP feedback aiortc swallows when a track hands it pre-encoded packets.

`RTCRtpSender` reads PLI only to set a flag for *its own* encoder, and REMB only to steer that
encoder; with `av.Packet`s from our pipeline neither reaches us (FIELD-NOTES). aiortc exposes no
public hook, so we wrap the sender's `_handle_rtcp_packet` on the instance: the DTLS transport
looks the method up per packet, and the original still runs (RTT, stats).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiortc import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPsfbPacket,
    unpack_remb_fci,
)

log = logging.getLogger(__name__)


def watch_feedback(
    sender: RTCRtpSender,
    on_keyframe_request: Callable[[], None],
    on_bandwidth_estimate: Callable[[int], None],
) -> None:
    original = sender._handle_rtcp_packet

    async def handle(packet: object) -> None:
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                on_keyframe_request()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    log.debug("ignoring a non-REMB application feedback packet")
                else:
                    if sender._ssrc in ssrcs:
                        on_bandwidth_estimate(bitrate)
        await original(packet)  # type: ignore[arg-type]

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]
