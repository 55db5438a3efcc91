"""The aiortc video track of one viewer: hands pipeline pictures to `RTCRtpSender` ready to send.

`recv()` returns a `PacketizedPicture` (payloads made once per stream, see `packetizer`), so one
encode and one packetisation feed many senders. The track subscribes to its pipeline only when
aiortc first pulls from it (the connection is up and the codec negotiated), skips everything
before the first keyframe, and when its viewer falls behind it drops the backlog and asks for
a fresh keyframe instead of queueing latency.

The sender's loop (`rtp_send_loop`) attaches its `send_now`: then a picture goes out from
`deliver()` itself, as the pipeline publishes it -- one pass over every viewer, no task woken
per viewer. Pictures it declines (connection not up) are queued for `recv()`
as before, and the direct path waits until that queue is empty so order is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from cloudphone.codecs import EncodedPacket
from cloudphone.edge import ntp_clock, packetizer
from cloudphone.edge.packetizer import PacketizedPicture

if TYPE_CHECKING:
    from cloudphone.edge.pipeline import Pipeline

MAX_BACKLOG = 8


class EncodedVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, pipeline: Pipeline, mark: str | None = None) -> None:
        super().__init__()
        packetizer.install()
        ntp_clock.install()
        self._pipeline = pipeline
        self.mark = mark  # watermark label drawn into this viewer's picture (own encode)
        self._codec: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queue: asyncio.Queue[EncodedPacket | None] = asyncio.Queue()
        self._subscribed: str | None = None
        self._waiting_for_keyframe = True
        self.packets_sent = 0
        self.packets_dropped = 0
        self.last_packet: EncodedPacket | None = None
        self._send_now: Callable[[PacketizedPicture], bool] | None = None
        self.pictures_sent_directly = 0  # of packets_sent, those written from deliver()

    @property
    def stream_key(self) -> str | None:
        """The pipeline stream this track receives (codec, and mark if any), once subscribed."""
        return self._subscribed

    @property
    def codec(self) -> str | None:
        return self._codec.result() if self._codec.done() else None

    def select_codec(self, codec: str) -> None:
        """Set once the answer says which codec the sender will use."""
        if not self._codec.done():
            self._codec.set_result(codec)

    async def recv(self) -> PacketizedPicture:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        if self._subscribed is None:
            codec = await self._codec
            if self.readyState != "live":
                raise MediaStreamError
            self._subscribed = self._pipeline.subscribe(codec, self, self.mark)
        item = await self._queue.get()
        key = self._subscribed
        if item is None or key is None:  # stopped
            raise MediaStreamError
        picture = self._pipeline.packetize(key, item)
        self._sent(item)
        return picture

    def attach_sender(self, send_now: Callable[[PacketizedPicture], bool] | None) -> None:
        """Let `deliver()` hand pictures straight to the sender (None: back to `recv()`)."""
        self._send_now = send_now

    def _sent(self, item: EncodedPacket) -> None:
        self.packets_sent += 1
        self.last_packet = item
        self._pipeline.note_sent(item)

    def deliver(self, item: EncodedPacket) -> None:
        """Called by the pipeline on the event loop for every packet of our codec."""
        if self._waiting_for_keyframe:
            if not item.keyframe:
                return
            self._waiting_for_keyframe = False
        send_now, key = self._send_now, self._subscribed
        if send_now is not None and key is not None and self._queue.empty():
            if send_now(self._pipeline.packetize(key, item)):
                self.pictures_sent_directly += 1
                self._sent(item)
                return
        if self._queue.qsize() >= MAX_BACKLOG:
            while not self._queue.empty():
                self._queue.get_nowait()
                self.packets_dropped += 1
            self._waiting_for_keyframe = not item.keyframe
            if self._waiting_for_keyframe:
                if self._subscribed is not None:
                    self._pipeline.request_keyframe(self._subscribed)
                return
        self._queue.put_nowait(item)

    def stop(self) -> None:
        if self._subscribed is not None:
            self._pipeline.unsubscribe(self._subscribed, self)
            self._subscribed = None
        if not self._codec.done():
            self._codec.cancel()
        self._queue.put_nowait(None)
        super().stop()
