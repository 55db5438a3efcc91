"""One viewer's WebRTC session: the peer connection, its video track and its data channels.

The edge is the offerer (it owns the tracks and codec choices). One handler per data channel,
as Cuttlefish does: `input` (ordered) -> validated -> guest; `control` carries guest and session
events to the page; `stats` sends server-side timings once a second. Closing is idempotent and
releases everything the session holds (peer connection, track subscription, tasks, listeners):
the leak test counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtcdatachannel import RTCDataChannel
from aiortc.sdp import SessionDescription, candidate_from_sdp
from cloudphone.edge import rtp_send_loop
from cloudphone.edge.audio_track import (
    PassthroughAudioTrack,
    add_audio_transceiver,
    guest_audio_codec,
)
from cloudphone.edge.auth import Principal
from cloudphone.edge.ice import announce, rtc_configuration
from cloudphone.edge.input import InputError, parse_input
from cloudphone.edge.pipeline import Pipeline
from cloudphone.edge.playout_delay import offer_playout_delay, send_playout_delay
from cloudphone.edge.rtcp_arrival import receive_rtcp_on_arrival
from cloudphone.edge.rtcp_feedback import watch_feedback
from cloudphone.edge.track import EncodedVideoTrack
from cloudphone.signaling.ice_servers import IceServer
from cloudphone.vm.guest import GuestEventName, GuestState, InputEvent, ScreenGeometry

if TYPE_CHECKING:
    from cloudphone.edge.sharing.room import Room

log = logging.getLogger(__name__)

_MIME = {"h264": "video/H264", "vp8": "video/VP8"}
STATS_INTERVAL_S = 1.0
INPUT_QUEUE_LIMIT = 256
_CLOSING: set[asyncio.Task[None]] = set()


@dataclass(frozen=True, slots=True)
class SessionOptions:
    codec: str = "auto"  # "auto" | "h264" | "vp8"
    ice_servers: tuple[IceServer, ...] = ()
    announced_addresses: tuple[tuple[str, str], ...] = ()
    ice_relay_only: bool = False  # gather relayed candidates only (EdgeConfig.ice_relay_only)
    # RTP playout-delay (min, max) ms asking the browser to render frames as they decode;
    # None: no extension (the browser smooths playback with its own jitter buffer).
    playout_delay: tuple[int, int] | None = (0, 100)
    # Label drawn into this viewer's picture by the server (policy); None: no watermark.
    watermark: str | None = None


def codec_preferences(choice: str) -> list[str]:
    """Codecs to offer, most preferred first. H.264 first for `auto`: it costs a third of VP8
    to encode, and a passthrough guest already produces it."""
    if choice in _MIME:
        return [choice]
    return ["h264", "vp8"]


def negotiated_codec(answer_sdp: str) -> str | None:
    """The codec the sender will use: aiortc takes the answer's first codec we offered."""
    description = SessionDescription.parse(answer_sdp)
    for media in description.media:
        if media.kind != "video":
            continue
        for codec in media.rtp.codecs:
            name = codec.mimeType.lower()
            for key, mime in _MIME.items():
                if name == mime.lower():
                    return key
    return None


class PeerSession:
    """A viewer of one guest. Create, `offer()`, then `accept_answer()`; `close()` at the end."""

    def __init__(
        self,
        session_id: str,
        pipeline: Pipeline,
        role: str,
        options: SessionOptions,
        on_closed: Callable[[PeerSession, str], Awaitable[None] | None] | None = None,
        *,
        identity: Principal | None = None,
        room: Room | None = None,
    ) -> None:
        self.session_id = session_id
        self.identity = identity or Principal(name=role, role=role, kind="dev")
        # The phone's room decides control, clipboard, telephony and limits; without one (a bare
        # session in a test) the role alone decides whether input is accepted.
        self.room = room
        self.pipeline = pipeline
        self.guest = pipeline.guest
        self.role = role
        self.options = options
        self.created_at = time.monotonic()
        self.last_activity = self.created_at
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.inputs_applied = 0
        self.inputs_rejected = 0
        self._on_closed = on_closed
        self._pc = RTCPeerConnection(
            rtc_configuration(options.ice_servers, relay_only=options.ice_relay_only)
        )
        self._track = EncodedVideoTrack(pipeline, options.watermark)
        self._audio: PassthroughAudioTrack | None = None
        self._channels: dict[str, RTCDataChannel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._input_queue: asyncio.Queue[InputEvent] = asyncio.Queue(INPUT_QUEUE_LIMIT)
        self._closing = False
        self._stats_wanted = asyncio.Event()  # set by `control/stats {on: true}` from the page

    @property
    def peer_connection(self) -> RTCPeerConnection:
        return self._pc

    @property
    def track(self) -> EncodedVideoTrack:
        return self._track

    @property
    def codec(self) -> str | None:
        return self._track.codec

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def control_open(self) -> bool:
        channel = self._channels.get("control")
        return channel is not None and channel.readyState == "open"

    async def offer(self) -> str:
        """Build the offer: one send-only video transceiver with our codec order, 3 channels."""
        pc = self._pc
        transceiver = pc.addTransceiver(self._track, direction="sendonly")
        wanted = codec_preferences(self.options.codec)
        capabilities = RTCRtpSender.getCapabilities("video").codecs
        preferred = [c for name in wanted for c in capabilities if c.mimeType == _MIME[name]]
        preferred += [c for c in capabilities if c.mimeType == "video/rtx"]
        transceiver.setCodecPreferences(preferred)
        watch_feedback(transceiver.sender, self._on_keyframe_request, self._on_bandwidth)
        rtp_send_loop.install(transceiver.sender)
        if self.options.playout_delay is not None:
            offer_playout_delay()
            send_playout_delay(transceiver.sender, *self.options.playout_delay)
        if guest_audio_codec(self.guest):  # the guest's own Opus, passed through
            self._audio = add_audio_transceiver(pc, self.guest)

        self._open_channel("input", ordered=True).on("message", self._on_input_message)
        control = self._open_channel("control", ordered=True)
        control.on("message", self._on_control_message)
        control.on("open", self._on_control_open)
        self._open_channel("stats", ordered=False, maxRetransmits=0)

        pc.on("connectionstatechange", self._on_connection_state)
        self.guest.events.on(GuestEventName.STATE, self._on_guest_state)
        if self.room is None:
            self.guest.events.on(GuestEventName.CLIPBOARD, self._on_guest_clipboard)
        self.pipeline.events.on("screen", self._on_screen)

        await pc.setLocalDescription(await pc.createOffer())  # gathers: the sockets exist now
        for sender in pc.getSenders():  # bundling later keeps the first (video) transport
            receive_rtcp_on_arrival(sender.transport)
        self._spawn(self._apply_inputs(), "input")
        self._spawn(self._send_stats(), "stats")
        return announce(pc.localDescription.sdp, dict(self.options.announced_addresses))

    async def accept_answer(self, sdp: str) -> str:
        codec = negotiated_codec(sdp)
        if codec is None:
            raise ValueError("the answer accepts none of the offered video codecs")
        self._track.select_codec(codec)
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        log.info(
            "session %s: %s viewer of %s, codec %s",
            self.session_id,
            self.role,
            self.guest.guest_id,
            codec,
        )
        return codec

    async def add_remote_candidate(
        self, candidate: str, sdp_mid: str | None, index: int | None
    ) -> None:
        if not candidate:
            await self._pc.addIceCandidate(None)
            return
        text = candidate.split(":", 1)[1] if candidate.startswith("candidate:") else candidate
        parsed = candidate_from_sdp(text)
        if parsed.ip.endswith(".local"):
            return  # an mDNS name: nothing here can resolve it
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = index
        await self._pc.addIceCandidate(parsed)

    def send_control(self, kind: str, /, **fields: object) -> None:
        self._send("control", {"type": kind, **fields})

    async def close(self, reason: str = "closed") -> None:
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        self.close_reason = reason
        if self.room is not None:
            self.room.leave(self, reason)
        self.guest.events.remove_listener(GuestEventName.STATE, self._on_guest_state)
        if self.room is None:
            self.guest.events.remove_listener(GuestEventName.CLIPBOARD, self._on_guest_clipboard)
        self.pipeline.events.remove_listener("screen", self._on_screen)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._track.stop()
        if self._audio is not None:
            self._audio.stop()
        try:
            await self._pc.close()
        except Exception:  # a half-built connection may fail to close; it is gone either way
            log.exception("session %s: closing the peer connection failed", self.session_id)
        self.closed.set()
        log.info("session %s closed: %s", self.session_id, reason)
        if self._on_closed is not None:
            result = self._on_closed(self, reason)
            if result is not None:
                await result

    # -- channels ----------------------------------------------------------------------------

    def _open_channel(self, label: str, **options: object) -> RTCDataChannel:
        channel = self._pc.createDataChannel(label, **options)  # type: ignore[arg-type]
        self._channels[label] = channel
        return channel

    def _send(self, label: str, payload: dict[str, object]) -> None:
        channel = self._channels.get(label)
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps(payload, separators=(",", ":")))

    def _may_input(self) -> bool:
        if self.room is not None:
            return self.room.may_input(self)
        return self.role != "viewer"

    def _on_input_message(self, raw: str | bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            event = parse_input(raw)
        except InputError as exc:
            self.inputs_rejected += 1
            log.info("session %s: input refused (%s): %s", self.session_id, exc.code, exc.message)
            self._send("input", {"type": "error", "code": exc.code, "message": exc.message})
            return
        if not self._may_input():
            # Dropped here, at the edge: the page's own idea of who controls is not trusted.
            self.inputs_rejected += 1
            message = (
                "viewers cannot send input"
                if self.room is None
                else "you do not have control of this phone (ask with control/request)"
            )
            self._send("input", {"type": "error", "code": "forbidden", "message": message})
            return
        try:
            self._input_queue.put_nowait(event)
        except asyncio.QueueFull:
            self.inputs_rejected += 1
            self._send(
                "input", {"type": "error", "code": "overloaded", "message": "input queue full"}
            )

    def _on_control_message(self, raw: str | bytes) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            self._send("control", {"type": "error", "code": "bad-json", "message": "not JSON"})
            return
        self.last_activity = time.monotonic()
        kind = data.get("type") if isinstance(data, dict) else None
        if self.room is not None and isinstance(kind, str) and self.room.handle(self, kind, data):
            return
        if kind == "control/keyframe":
            self.pipeline.request_keyframe(self._track.stream_key or "", urgent=False)
        elif kind == "control/clipboard":
            self._spawn(self._set_guest_clipboard(data.get("text")), "clipboard")
        elif kind == "control/stats":
            on = data.get("on")
            if not isinstance(on, bool):
                self._send(
                    "control",
                    {"type": "error", "code": "bad-message", "message": "on must be true or false",
                     "request": kind},
                )  # fmt: skip
            elif on:
                self._stats_wanted.set()
            else:
                self._stats_wanted.clear()
        elif kind == "control/ping":
            self._send("control", {"type": "control/pong", "t": data.get("t")})
        else:
            self._send(
                "control",
                {
                    "type": "error",
                    "code": "unknown-type",
                    "message": f"unknown control message {kind!r}",
                },
            )

    async def _apply_inputs(self) -> None:
        while True:
            event = await self._input_queue.get()
            try:
                await self.guest.send_input(event)
                self.inputs_applied += 1
            except Exception:
                log.exception("session %s: guest refused input", self.session_id)

    async def _send_stats(self) -> None:
        """Once a second while the page shows them (`control/stats`): most pages never do, and
        each message is SCTP work per viewer (send, SACK, forward-TSN) for nothing."""
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            await self._stats_wanted.wait()
            stats = self.pipeline.stats()
            stats.update(
                type="stats",
                session=self.session_id,
                codec=self.codec,
                stream=self._track.stream_key,  # "h264", or "h264#<digest>" when watermarked
                packetsSent=self._track.packets_sent,
                packetsDropped=self._track.packets_dropped,
                inputsApplied=self.inputs_applied,
                t=time.time(),
            )
            self._send("stats", stats)

    # -- events ------------------------------------------------------------------------------

    def _on_keyframe_request(self) -> None:
        key = self._track.stream_key
        if key:
            self.pipeline.request_keyframe(key)

    def _on_bandwidth(self, bps: int) -> None:
        key = self._track.stream_key
        if key:
            self.pipeline.report_bandwidth(key, self._track, bps)

    def _on_control_open(self) -> None:
        self.last_activity = time.monotonic()  # idle time counts from a working connection
        if self.room is not None:
            self.room.send_state(self)

    def _on_guest_state(self, state: GuestState) -> None:
        name = "guest-restarting" if state == GuestState.RESTARTING else f"guest-{state}"
        self.send_control("guest/state", state=str(state), event=name)

    def _on_guest_clipboard(self, text: str) -> None:
        if self.role != "viewer":  # a viewer does not read the owner's clipboard
            self.send_control("guest/clipboard", text=text)

    async def _set_guest_clipboard(self, text: object) -> None:
        setter = getattr(self.guest, "set_clipboard", None)
        ok = False
        if self.role != "viewer" and isinstance(text, str) and callable(setter):
            ok = bool(await setter(text))
        self.send_control("control/clipboard-ack", ok=ok)

    def _on_screen(self, screen: ScreenGeometry) -> None:
        self.send_control("guest/screen", **screen.as_dict())

    async def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if state in ("failed", "closed") and not self._closing:
            self._spawn(self.close(f"peer connection {state}"), "close")

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(f"session-{self.session_id}-{name}")
        # close() cancels `_tasks`, so a task that runs close() itself is kept elsewhere.
        bucket = _CLOSING if name == "close" else self._tasks
        bucket.add(task)
        task.add_done_callback(bucket.discard)
