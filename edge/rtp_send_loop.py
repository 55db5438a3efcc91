"""A per-viewer RTP send loop that does less Python per packet than aiortc's.

Why: with pictures packetised once per stream (`packetizer`), what each extra viewer costs is
aiortc's `RTCRtpSender._run_rtp`. Per packet it builds the header extensions (our playout-delay
entry is unpacked and re-packed each time), reads the NTP clock twice through `datetime`, and
serialises an `RtpPacket`; profiled with 20 viewers that was about 40 % of the event loop. The
extensions are the same for every packet of a picture except abs-send-time, which moves by
microseconds within one picture's burst (the field's resolution is 3.8 us); so this loop builds
them once per picture and per packet packs only the 12-byte fixed header.

Everything aiortc reads elsewhere stays current: the retransmission history (NACK, RTX), the
sender-report counters and timestamps, the events `RTCRtpSender.stop()` waits on. That state is
private (name-mangled) in aiortc, so `install()` first checks every name it uses and leaves
aiortc's own loop in place, with a warning, when one is missing (say, after an upgrade).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
from typing import Any

from aiortc import RTCRtpSender, clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensions, RtpPacket
from aiortc.utils import random32, uint16_add, uint32_add

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
_FIXED_HEADER = struct.Struct("!BBHLL")


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


async def run_rtp(sender: RTCRtpSender, codec: RTCRtpCodecParameters) -> None:
    """What `RTCRtpSender._run_rtp` does, with the header extensions built once per picture."""
    _get(sender, "__rtp_started").set()
    history: dict[int, RtpPacket] = _get(sender, "__rtp_history")
    payload_type = codec.payloadType
    assert payload_type is not None  # negotiated before aiortc starts the loop
    sequence_number = random_sequence_number()
    timestamp_origin = random32()
    try:
        while True:
            if _get(sender, "__track") is None:
                await asyncio.sleep(0.02)
                continue
            frame = await sender._next_encoded_frame(codec)
            if frame is None:
                continue
            timestamp = uint32_add(timestamp_origin, frame.timestamp)
            extensions = HeaderExtensions()
            extensions.abs_send_time = (clock.current_ntp_time() >> 14) & 0x00FFFFFF
            extensions.mid = _get(sender, "__mid")
            profile, packed = _get(sender, "__rtp_header_extensions_map").set(extensions)
            first_byte = 0x90 if packed else 0x80  # version 2, extension bit
            tail = struct.pack("!HH", profile, len(packed) >> 2) + packed if packed else b""
            ssrc = sender._ssrc
            transport = sender.transport
            last = len(frame.payloads) - 1
            octets = 0
            for i, payload in enumerate(frame.payloads):
                marker = 1 if i == last else 0
                packet = RtpPacket(payload_type, marker, sequence_number, timestamp, ssrc, payload)
                packet.extensions = extensions
                history[sequence_number % RTP_HISTORY_SIZE] = packet
                header = _FIXED_HEADER.pack(
                    first_byte, (marker << 7) | payload_type, sequence_number, timestamp, ssrc
                )
                await transport._send_rtp(header + tail + payload)
                octets += len(payload)
                sequence_number = uint16_add(sequence_number, 1)
            _set(sender, "__ntp_timestamp", clock.current_ntp_time())
            _set(sender, "__rtp_timestamp", timestamp)
            _set(sender, "__octet_count", _get(sender, "__octet_count") + octets)
            _set(sender, "__packet_count", _get(sender, "__packet_count") + last + 1)
    except (asyncio.CancelledError, ConnectionError, MediaStreamError):
        pass
    except Exception:  # stop() waits for __rtp_exited: never leave without setting it
        log.exception("RTP send loop failed")
    track = _get(sender, "__track")
    if track is not None:
        track.stop()
        _set(sender, "__track", None)
    _set(sender, "__encoder", None)
    _get(sender, "__rtp_exited").set()
