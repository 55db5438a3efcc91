"""Per-viewer RTP sending with less Python per packet than aiortc's, in one pass per picture.

Why: with pictures packetised once per stream (`packetizer`), what each extra viewer costs is
aiortc's `RTCRtpSender._run_rtp`. Per packet it builds the header extensions (our playout-delay
entry is unpacked and re-packed each time), reads the NTP clock twice through `datetime`, and
serialises an `RtpPacket`; profiled with 20 viewers that was about 40 % of the event loop. The
extensions are the same for every packet of a picture except abs-send-time, which moves by
microseconds within one picture's burst (the field's resolution is 3.8 us); so `LeanRtpSender`
builds them once per sender and per picture patches three bytes, and per packet packs only the
12-byte fixed header.

aiortc's sender also pulls each picture from its track in its own task, so a picture published
to twenty viewers woke twenty tasks, and each packet then went down five coroutine layers (DTLS,
ICE transport, aioice connection, protocol, socket). None of them waits: at the bottom aioice's
protocol calls its transport's `sendto`, the UDP socket's for a host or server-reflexive
candidate, a TURN allocation's for a relayed one (which wraps the packet in a channel message
itself). So the track hands the picture to `LeanRtpSender.send_now` as the pipeline publishes
it, which protects (SRTP) and makes that same `sendto` call for every packet right there -- one
pass over all the viewers per picture, no task switch. A connection that is not up, or a pair
whose protocol is not aioice's own, declines, and the picture takes the queued path: the same
packets through aiortc's coroutines.

Everything aiortc reads elsewhere stays current: the retransmission history (NACK, RTX), the
sender-report counters and timestamps, the DTLS transport's byte counters, the events
`RTCRtpSender.stop()` waits on. That state is private (name-mangled) in aiortc, so `install()`
first checks every name it uses and leaves aiortc's own loop in place, with a warning, when one
is missing (say, after an upgrade).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
from collections.abc import Callable, Iterator
from typing import Any

from aioice.ice import StunProtocol
from aiortc import RTCRtpSender, clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensions, RtpPacket
from aiortc.utils import random32, uint16_add, uint32_add
from cloudphone.edge.packetizer import PacketizedPicture

log = logging.getLogger(__name__)

_PREFIX = "_RTCRtpSender"
_STATE = (
    "__rtp_started",
    "__rtp_exited",
    "__rtp_history",
    "__rtp_header_extensions_map",
    "__mid",
    "__ntp_timestamp",
    "__rtp_timestamp",
    "__octet_count",
    "__packet_count",
    "__track",
    "__encoder",
)
_DTLS_STATE = ("_state", "_tx_srtp", "_RTCDtlsTransport__tx_bytes", "_RTCDtlsTransport__tx_packets")
_FIXED_HEADER = struct.Struct("!BBHLL")
_ABS_SEND_TIME_PROBE = 0xA5C3E1  # three bytes that appear nowhere else in the extension block


def install(sender: RTCRtpSender) -> bool:
    """Make `sender` use the lean loop (before it starts sending). False: aiortc's is kept."""
    missing = [name for name in _STATE if not hasattr(sender, _PREFIX + name)]
    if missing:
        log.warning("aiortc's RTCRtpSender has no %s: keeping its own RTP loop", missing)
        return False
    sender._run_rtp = functools.partial(run_rtp, sender)  # type: ignore[method-assign]
    return True


def _get(sender: RTCRtpSender, name: str) -> Any:
    return getattr(sender, _PREFIX + name)


def _set(sender: RTCRtpSender, name: str, value: object) -> None:
    setattr(sender, _PREFIX + name, value)


class LeanRtpSender:
    """One viewer's RTP state (sequence numbers, timestamp origin, extension block) and its two
    ways to send a picture: `send_now` (synchronous) and `send` (queued, aiortc's coroutines)."""

    def __init__(self, sender: RTCRtpSender, codec: RTCRtpCodecParameters) -> None:
        assert codec.payloadType is not None  # negotiated before aiortc starts the loop
        self._sender = sender
        self._payload_type = codec.payloadType
        self._history: dict[int, RtpPacket] = _get(sender, "__rtp_history")
        self._sequence_number = random_sequence_number()
        self._timestamp_origin = random32()
        # aiortc sets the mid and the extension ids once, in send(), before it starts the loop
        self._mid: str | None = _get(sender, "__mid")
        self._tail, self._send_time_at = self._extension_block()
        self._direct_ok = all(hasattr(sender.transport, name) for name in _DTLS_STATE)
        self._direct_failed = False

    # -- the two paths ---------------------------------------------------------------------

    def send_now(self, picture: PacketizedPicture) -> bool:
        """Protect and write `picture` now, through the nominated pair's transport.
        False: not possible here (not connected, not aioice's protocol); queue it for `send`."""
        if not self._direct_ok or self._direct_failed:
            return False
        dtls = self._sender.transport
        try:
            if dtls._state != DtlsState.CONNECTED or dtls._tx_srtp is None:
                return False
            pair = dtls.transport._connection._nominated.get(1)
            if pair is None or type(pair.protocol) is not StunProtocol:
                return False
            udp = pair.protocol.transport  # a UDP socket's, or a TURN allocation's
            closing = getattr(udp, "is_closing", None)  # TURN's has none; it drops once closed
            if udp is None or (closing is not None and closing()):
                return False
            if not self._sender._enabled:
                return True  # aiortc drops pictures for a disabled sender; so do we
            protect = dtls._tx_srtp.protect
            address = pair.remote_addr
        except AttributeError:  # aiortc/aioice moved their state: never break the fan-out
            log.exception("direct RTP send unavailable; this viewer uses the queued path")
            self._direct_failed = True
            return False
        sent = count = 0
        try:
            for packet in self._packets(picture.payloads, picture.timestamp):
                data = protect(packet)
                udp.sendto(data, address)
                sent += len(data)
                count += 1
        except Exception:  # a broken socket or SRTP context: the queued path decides from here
            log.exception("direct RTP send failed; this viewer continues on the queued path")
            self._direct_failed = True
        _count_dtls(dtls, sent, count)
        return True

    async def send(self, payloads: list[bytes], timestamp: int) -> None:
        """The queued path: the same packets through aiortc's DTLS and ICE coroutines."""
        transport = self._sender.transport
        for packet in self._packets(payloads, timestamp):
            await transport._send_rtp(packet)

    # -- shared ----------------------------------------------------------------------------

    def _packets(self, payloads: list[bytes], timestamp: int) -> Iterator[bytes]:
        """The RTP packets of one picture; keeps aiortc's history and SR counters current."""
        sender = self._sender
        timestamp = uint32_add(self._timestamp_origin, timestamp)
        first_byte, tail, extensions = self._header_tail()
        payload_type = self._payload_type
        ssrc = sender._ssrc
        history = self._history
        sequence_number = self._sequence_number
        last = len(payloads) - 1
        octets = 0
        for i, payload in enumerate(payloads):
            marker = 1 if i == last else 0
            packet = RtpPacket(payload_type, marker, sequence_number, timestamp, ssrc, payload)
            packet.extensions = extensions
            history[sequence_number % RTP_HISTORY_SIZE] = packet
            header = _FIXED_HEADER.pack(
                first_byte, (marker << 7) | payload_type, sequence_number, timestamp, ssrc
            )
            sequence_number = uint16_add(sequence_number, 1)
            self._sequence_number = sequence_number
            octets += len(payload)
            yield header + tail + payload
        _set(sender, "__ntp_timestamp", clock.current_ntp_time())
        _set(sender, "__rtp_timestamp", timestamp)
        _set(sender, "__octet_count", _get(sender, "__octet_count") + octets)
        _set(sender, "__packet_count", _get(sender, "__packet_count") + last + 1)

    def _header_tail(self) -> tuple[int, bytes, HeaderExtensions]:
        """First header byte, the extension block for this picture, and the extensions (kept
        with each packet for retransmissions). The block is built once; per picture only the
        three abs-send-time bytes are written."""
        abs_send_time = (clock.current_ntp_time() >> 14) & 0x00FFFFFF
        extensions = HeaderExtensions()
        extensions.abs_send_time = abs_send_time
        extensions.mid = self._mid
        tail, offset = self._tail, self._send_time_at
        if not tail:
            return 0x80, b"", extensions  # version 2, no extensions negotiated
        if offset >= 0:
            tail = tail[:offset] + abs_send_time.to_bytes(3, "big") + tail[offset + 3 :]
        return 0x90, tail, extensions  # version 2, extension bit

    def _extension_block(self) -> tuple[bytes, int]:
        """The extension block as aiortc's map packs it, and where abs-send-time sits in it
        (-1: not negotiated, nothing to write)."""
        probe = HeaderExtensions()
        probe.mid = self._mid
        probe.abs_send_time = _ABS_SEND_TIME_PROBE
        profile, packed = _get(self._sender, "__rtp_header_extensions_map").set(probe)
        if not packed:
            return b"", -1
        tail = struct.pack("!HH", profile, len(packed) >> 2) + packed
        return tail, tail.find(_ABS_SEND_TIME_PROBE.to_bytes(3, "big"))


def _count_dtls(dtls: RTCDtlsTransport, nbytes: int, packets: int) -> None:
    """What `RTCDtlsTransport._send_rtp` counts (its getStats) for packets sent around it."""
    dtls._RTCDtlsTransport__tx_bytes += nbytes  # type: ignore[attr-defined]
    dtls._RTCDtlsTransport__tx_packets += packets  # type: ignore[attr-defined]


async def run_rtp(sender: RTCRtpSender, codec: RTCRtpCodecParameters) -> None:
    """What `RTCRtpSender._run_rtp` does: the direct path is offered to the track; pictures the
    track queues anyway are pulled and sent here."""
    _get(sender, "__rtp_started").set()
    lean = LeanRtpSender(sender, codec)
    track = _get(sender, "__track")
    attach: Callable[[Callable[[PacketizedPicture], bool] | None], None] | None = getattr(
        track, "attach_sender", None
    )
    if attach is not None:
        attach(lean.send_now)
    try:
        while True:
            if _get(sender, "__track") is None:
                await asyncio.sleep(0.02)
                continue
            frame = await sender._next_encoded_frame(codec)
            if frame is None:
                continue
            await lean.send(frame.payloads, frame.timestamp)
    except (asyncio.CancelledError, ConnectionError, MediaStreamError):
        pass
    except Exception:  # stop() waits for __rtp_exited: never leave without setting it
        log.exception("RTP send loop failed")
    if attach is not None:
        attach(None)
    track = _get(sender, "__track")
    if track is not None:
        track.stop()
        _set(sender, "__track", None)
    _set(sender, "__encoder", None)
    _get(sender, "__rtp_exited").set()
