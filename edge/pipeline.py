"""One pipeline per guest: capture -> convert -> encode once per codec -> fan out to viewers.

The guest pushes pictures into the pipeline (it is the guest's `FrameSink`); each codec that at
least one viewer negotiated has one `EncoderWorker` thread, created on the first subscriber and
retired with the last. Encoded packets come back to the event loop and are handed to every
subscribed track. Each picture is also packetised once per stream (`StreamPacketizer`, by the
first viewer to send it): aiortc only adds each viewer's RTP header and SRTP. A guest that
encodes by itself (scrcpy) is passed through: its access units are fanned out with no encode.

Viewer feedback flows back the short way: PLI/FIR or a new viewer -> `request_keyframe`;
REMB -> `report_bandwidth` -> the codec's `BitrateController`.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from cloudphone.codecs import VIDEO_CLOCK_RATE, EncodedPacket, EncoderConfig, create_encoder
from cloudphone.codecs.decoder import StreamDecoder
from cloudphone.codecs.worker import EncoderWorker
from cloudphone.edge.bitrate import BitrateController
from cloudphone.edge.packetizer import PacketizedPicture, StreamPacketizer
from cloudphone.edge.watermark import MarkedEncoder, Watermark
from cloudphone.vm.guest import EncodedChunk, Guest, RawFrame, ScreenGeometry
from pyee.asyncio import AsyncIOEventEmitter

log = logging.getLogger(__name__)

KEYFRAME_MIN_INTERVAL_S = 0.3
TRACE_FRAMES = 4096


def stream_key(codec: str, mark: str | None = None) -> str:
    """Streams are keyed by codec, and by watermark label when the picture carries one: each
    distinct mark is its own encode. The label is digested: keys reach every viewer's stats
    and the metrics, and must not name the other viewers."""
    if mark is None:
        return codec
    return f"{codec}#{hashlib.sha256(mark.encode()).hexdigest()[:10]}"


class PacketSubscriber(Protocol):
    def deliver(self, item: EncodedPacket) -> None: ...


@dataclass(frozen=True, slots=True)
class EncoderSettings:
    """Per-edge encoding defaults (the size comes from the guest's pictures)."""

    fps: int = 30
    bitrate: int = 2_500_000
    min_bitrate: int = 300_000
    max_bitrate: int = 8_000_000
    keyframe_interval_s: float = 10.0
    idle_refresh_s: float = 1.0


@dataclass
class _CodecStream:
    """Everything the pipeline keeps per codec in use."""

    codec: str
    mark: str | None = None
    packetizer: StreamPacketizer = field(init=False)
    subscribers: set[PacketSubscriber] = field(default_factory=set)
    worker: EncoderWorker | None = None
    bitrate: BitrateController | None = None
    last_keyframe_request: float = 0.0
    packets_out: int = 0
    bytes_out: int = 0
    keyframes_out: int = 0
    last_latency_ms: float = 0.0

    def __post_init__(self) -> None:
        self.packetizer = StreamPacketizer(self.codec)


class Pipeline:
    """The `FrameSink` of one guest and the fan-out point of its encoded streams."""

    def __init__(self, guest: Guest, settings: EncoderSettings | None = None) -> None:
        self.guest = guest
        self.settings = settings or EncoderSettings()
        self.events = AsyncIOEventEmitter()  # "screen" (ScreenGeometry)
        self.frames_in = 0
        self.encoders_created = 0
        self._loop = asyncio.get_running_loop()
        self._streams: dict[str, _CodecStream] = {}
        self._size = (guest.screen.width, guest.screen.height)
        self._retiring: set[asyncio.Task[None]] = set()
        self._epoch = time.monotonic()
        self._last_pts = -1
        self._closed = False
        # frame id -> wall-clock times of its trip through the edge (benchmarks read this).
        self.trace: collections.OrderedDict[int, dict[str, float | str]] = collections.OrderedDict()
        self._wall_offset = time.time() - time.monotonic()
        self._decoder: StreamDecoder | None = None  # passthrough guest + another codec's viewer
        guest.attach(self)

    # -- FrameSink: called from the guest's threads ------------------------------------------

    def push_frame(self, frame: RawFrame) -> None:
        self.frames_in += 1
        if (frame.width, frame.height) != self._size:
            self._loop.call_soon_threadsafe(self._resize, frame)
            return
        for stream in list(self._streams.values()):
            worker = stream.worker
            if worker is not None:
                worker.submit(frame)

    def push_encoded(self, chunk: EncodedChunk) -> None:
        decoder = self._decoder
        if decoder is not None:
            decoder.submit(chunk)
        self._loop.call_soon_threadsafe(self._on_chunk, chunk)

    # -- subscriptions (event loop) ----------------------------------------------------------

    @property
    def passthrough_codec(self) -> str | None:
        return self.guest.capabilities.encoded_output

    @property
    def active_encoders(self) -> int:
        return sum(1 for s in self._streams.values() if s.worker is not None)

    @property
    def viewers(self) -> int:
        return sum(len(s.subscribers) for s in self._streams.values())

    def subscribe(self, codec: str, subscriber: PacketSubscriber, mark: str | None = None) -> str:
        """Add a receiver of `codec` packets (watermarked with `mark`); returns the stream key."""
        if self._closed:
            raise RuntimeError("pipeline is closed")
        key = stream_key(codec, mark)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _CodecStream(codec, mark)
        stream.subscribers.add(subscriber)
        if stream.worker is None and (codec != self.passthrough_codec or mark is not None):
            self._start_encoder(stream)
        self.request_keyframe(key, urgent=True)
        self.guest.request_refresh()
        return key

    def unsubscribe(self, key: str, subscriber: PacketSubscriber) -> None:
        stream = self._streams.get(key)
        if stream is None:
            return
        stream.subscribers.discard(subscriber)
        if stream.bitrate is not None:
            stream.bitrate.forget(subscriber)
        if not stream.subscribers:
            del self._streams[key]
            if stream.worker is not None:
                self._retire(stream.worker)
            if self._decoder is not None and not self.active_encoders:
                self._stop_decoder()

    def request_keyframe(self, key: str, *, urgent: bool = False) -> None:
        stream = self._streams.get(key)
        if stream is None:
            return
        now = time.monotonic()
        if not urgent and now - stream.last_keyframe_request < KEYFRAME_MIN_INTERVAL_S:
            return
        stream.last_keyframe_request = now
        if stream.worker is not None:
            stream.worker.request_keyframe()
        elif key == self.passthrough_codec:
            self.guest.request_keyframe()

    def packetize(self, key: str, packet: EncodedPacket) -> PacketizedPicture:
        """`packet`'s RTP payloads, made once for all the viewers of stream `key`."""
        stream = self._streams.get(key)
        packetizer = stream.packetizer if stream is not None else StreamPacketizer(packet.codec)
        return packetizer.packetize(packet)

    def note_sent(self, packet: EncodedPacket) -> None:
        """A track handed `packet` to aiortc: the end of the edge's part of its trip."""
        entry = self.trace.get(packet.frame_id)
        if entry is not None and "sent" not in entry:
            entry["sent"] = time.time()

    def report_bandwidth(self, key: str, subscriber: PacketSubscriber, bps: int) -> None:
        stream = self._streams.get(key)
        if stream is not None and stream.bitrate is not None:
            stream.bitrate.report(subscriber, bps)

    # -- internals ---------------------------------------------------------------------------

    def _start_encoder(self, stream: _CodecStream) -> None:
        s = self.settings
        width, height = self._size
        config = EncoderConfig(
            codec=stream.codec,
            width=width,
            height=height,
            fps=s.fps,
            bitrate=stream.bitrate.current if stream.bitrate else s.bitrate,
            min_bitrate=s.min_bitrate,
            max_bitrate=s.max_bitrate,
            keyframe_interval_s=s.keyframe_interval_s,
        )
        encoder = create_encoder(config)
        if stream.mark is not None:
            encoder = MarkedEncoder(encoder, Watermark(stream.mark))
        if self.passthrough_codec is not None and self._decoder is None:
            log.warning(
                "%s: transcoding %s -> %s for a viewer that cannot take the guest's own stream",
                self.guest.guest_id, self.passthrough_codec, stream.codec,
            )  # fmt: skip

            def on_decoded(frame: RawFrame) -> None:
                self._loop.call_soon_threadsafe(self._push_transcoded, frame)

            self._decoder = StreamDecoder(
                self.passthrough_codec, on_decoded, name=f"decoder-{self.guest.guest_id}"
            )

        key = stream_key(stream.codec, stream.mark)

        def on_packets(packets: list[EncodedPacket]) -> None:
            self._loop.call_soon_threadsafe(self._publish, key, packets)

        worker = EncoderWorker(
            encoder,
            on_packets,
            idle_refresh_s=s.idle_refresh_s,
            name=f"encoder-{self.guest.guest_id}-{key}",
        )
        stream.worker = worker
        if stream.bitrate is None:
            stream.bitrate = BitrateController(
                config.bitrate, s.min_bitrate, s.max_bitrate, worker.set_bitrate
            )
        else:
            stream.bitrate.apply = worker.set_bitrate
        self.encoders_created += 1
        log.info(
            "%s: %s encoder started at %dx%d (%d encoders created)",
            self.guest.guest_id,
            stream.codec,
            width,
            height,
            self.encoders_created,
        )

    def _retire(self, worker: EncoderWorker) -> None:
        task = self._loop.create_task(asyncio.to_thread(worker.stop))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _publish(self, key: str, packets: list[EncodedPacket]) -> None:
        stream = self._streams.get(key)
        if stream is None:
            return
        now = time.monotonic()
        for packet in packets:
            if len(stream.subscribers) and packet.frame_id not in self.trace:
                offset = self._wall_offset
                self.trace[packet.frame_id] = {
                    "codec": packet.codec,
                    "encodeStart": packet.encode_started_at + offset,
                    "encodeEnd": packet.encoded_at + offset,
                    "published": now + offset,
                }
                if len(self.trace) > TRACE_FRAMES:
                    self.trace.popitem(last=False)
            stream.packets_out += 1
            stream.bytes_out += len(packet.data)
            stream.keyframes_out += packet.keyframe
            if stream.bitrate is not None:
                stream.bitrate.note_sent(len(packet.data))
            stream.last_latency_ms = (now - packet.captured_at) * 1000.0
            for subscriber in list(stream.subscribers):
                subscriber.deliver(packet)

    def _on_chunk(self, chunk: EncodedChunk) -> None:
        if (chunk.width, chunk.height) != self._size:
            self._size = (chunk.width, chunk.height)
            self._announce_screen()
        pts = max(int((chunk.captured_at - self._epoch) * VIDEO_CLOCK_RATE), self._last_pts + 1)
        self._last_pts = pts
        packet = EncodedPacket(
            data=chunk.data,
            codec=chunk.codec,
            keyframe=chunk.keyframe,
            pts=pts,
            width=chunk.width,
            height=chunk.height,
            captured_at=chunk.captured_at,
            encoded_at=chunk.captured_at,
        )
        self._publish(chunk.codec, [packet])

    def _resize(self, frame: RawFrame) -> None:
        """The guest's pictures changed size: rebuild encoders at the new size, same viewers."""
        if self._closed or (frame.width, frame.height) == self._size:
            if not self._closed:
                self.push_frame(frame)
            return
        log.info(
            "%s: screen %dx%d -> %dx%d", self.guest.guest_id, *self._size, frame.width, frame.height
        )
        self._size = (frame.width, frame.height)
        for stream in self._streams.values():
            if stream.worker is not None:
                self._retire(stream.worker)
                self._start_encoder(stream)
                stream.worker.request_keyframe()
        self._announce_screen()
        self.push_frame(frame)

    def _push_transcoded(self, frame: RawFrame) -> None:
        """A decoded picture of a passthrough guest, for the encoders of other codecs."""
        for stream in list(self._streams.values()):
            worker = stream.worker
            if worker is None:
                continue
            config = worker.encoder.config
            if (config.width, config.height) != (frame.width, frame.height):  # rotated
                self._retire(worker)
                self._start_encoder(stream)
                assert stream.worker is not None
                worker = stream.worker
                worker.request_keyframe()
            worker.submit(frame)

    def _stop_decoder(self) -> None:
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            task = self._loop.create_task(asyncio.to_thread(decoder.stop))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def _announce_screen(self) -> None:
        width, height = self._size
        screen = ScreenGeometry(width, height, self.guest.screen.rotation)
        self.events.emit("screen", screen)

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def stats(self) -> dict[str, object]:
        """A snapshot for the stats channel and metrics."""
        out: dict[str, object] = {
            "guest": self.guest.guest_id,
            "kind": self.guest.kind,
            "state": str(self.guest.state),
            "width": self._size[0],
            "height": self._size[1],
            "framesIn": self.frames_in,
            "viewers": self.viewers,
            "encoders": self.active_encoders,
            "passthrough": self.passthrough_codec,
        }
        streams = {}
        for key, stream in self._streams.items():
            entry: dict[str, object] = {
                "viewers": len(stream.subscribers),
                "packetsOut": stream.packets_out,
                "bytesOut": stream.bytes_out,
                "keyframes": stream.keyframes_out,
                "picturesPacketized": stream.packetizer.pictures_packetized,
                "pipelineLatencyMs": round(stream.last_latency_ms, 2),
                "transcoding": stream.worker is not None and self.passthrough_codec is not None,
            }
            if stream.worker is not None:
                st = stream.worker.stats
                entry.update(
                    encodeMs=round(st.encode_ms_ewma, 2),
                    framesEncoded=st.encoded,
                    framesDropped=st.dropped,
                    bitrateTarget=stream.worker.encoder.bitrate,
                )
            entry["watermarked"] = stream.mark is not None
            streams[key] = entry
        out["streams"] = streams
        return out

    async def close(self) -> None:
        """Stop every encoder and detach from the guest. Subscribers must be gone already."""
        if self._closed:
            return
        self._closed = True
        self.guest.attach(None)
        for stream in self._streams.values():
            if stream.worker is not None:
                self._retire(stream.worker)
        self._streams.clear()
        self._stop_decoder()
        if self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)
