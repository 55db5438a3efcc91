"""Hooks the RTCP feedback aiortc swallows when a track hands it pre-encoded packets.

`RTCRtpSender` reads PLI only to set a flag for *its own* encoder, and REMB only to steer that
encoder; with `av.Packet`s from our pipeline neither reaches us (FIELD-NOTES). aiortc exposes no
public hook, so `watch_feedback` wraps the sender's `_handle_rtcp_packet` on the instance: the
DTLS transport looks the method up per packet, and the original still runs (RTT, stats).
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

_FEEDBACK = "_cloudphone_feedback"  # the `Feedback` of a watched sender


class Feedback:
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
    feedback = Feedback(sender, on_keyframe_request, on_bandwidth_estimate)
    original = sender._handle_rtcp_packet

    async def handle(packet: object) -> None:
        if isinstance(packet, RtcpPsfbPacket):
            feedback.handle(packet)
        await original(packet)  # type: ignore[arg-type]

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]
    setattr(sender, _FEEDBACK, feedback)


def feedback_of(recipient: object) -> Feedback | None:
    """The feedback handler `watch_feedback` gave `recipient` (an RTP sender), if any."""
    return getattr(recipient, _FEEDBACK, None)
