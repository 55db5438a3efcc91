"""Decoding a guest's own H.264 back to pictures, for viewers that cannot take it as-is.

A self-encoding guest (Android via scrcpy) is normally passed through untouched. When a viewer
negotiated another codec (VP8), the edge must decode and re-encode: this is that decoder. It is
the slow path and says so (the pipeline logs and reports "transcoding"). One thread, a bounded
queue: when it falls behind it drops everything up to the next keyframe rather than queueing
latency (a decoder cannot skip single inter frames). Frames come out as yuv420p `RawFrame`s.

PyAV's frame-threaded H.264 decoder can hang the interpreter if it is garbage-collected
without being flushed (FIELD-NOTES), so the thread always flushes it before exiting.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import av
from av.video.codeccontext import VideoCodecContext
from cloudphone.vm.guest import EncodedChunk, RawFrame

log = logging.getLogger(__name__)

FrameCallback = Callable[[RawFrame], None]
QUEUE_LIMIT = 30


class StreamDecoder:
    """Decodes chunks on its own thread and hands each picture to `on_frame` (from that thread)."""

    def __init__(self, codec: str, on_frame: FrameCallback, *, name: str = "decoder") -> None:
        self.codec = codec
        self.decoded = 0
        self.dropped = 0
        self.errors = 0
        self._on_frame = on_frame
        self._queue: queue.Queue[EncodedChunk | None] = queue.Queue(QUEUE_LIMIT)
        self._skip_to_keyframe = True
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, chunk: EncodedChunk) -> None:
        """Thread-safe, never blocks."""
        with self._lock:
            if self._skip_to_keyframe and not chunk.keyframe:
                self.dropped += 1
                return
            self._skip_to_keyframe = False
            try:
                self._queue.put_nowait(chunk)
            except queue.Full:
                # Behind: throw the backlog away and restart at the next keyframe.
                while True:
                    try:
                        self._queue.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        break
                self.dropped += 1
                self._skip_to_keyframe = True

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        context = av.CodecContext.create(self.codec, "r")
        assert isinstance(context, VideoCodecContext)
        try:
            while (chunk := self._queue.get()) is not None:
                try:
                    frames = context.decode(av.Packet(chunk.data))
                except av.FFmpegError as exc:
                    self.errors += 1
                    log.debug("decode error (%s); waiting for a keyframe", exc)
                    with self._lock:
                        self._skip_to_keyframe = True
                    continue
                for frame in frames:
                    picture = frame.to_ndarray(format="yuv420p")
                    self.decoded += 1
                    try:
                        self._on_frame(RawFrame(picture, "yuv420p", chunk.captured_at))
                    except RuntimeError:  # the event loop is gone: the edge is shutting down
                        return
        finally:
            try:
                for _ in context.decode(None):
                    pass
            except av.FFmpegError:
                pass
