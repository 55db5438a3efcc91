"""One thread per encoder, fed through a single-slot mailbox where the newest picture wins.

Latency beats completeness: a picture that arrives while the encoder is busy replaces the one
waiting, so a slow encode never builds a queue. The thread also re-encodes the last picture when
a keyframe is wanted and nothing new is coming (a still screen must still reach a new viewer),
and sends a cheap refresh when the screen has been still for `idle_refresh_s`, so receivers keep
a live stream and recover from loss.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cloudphone.codecs.base import VIDEO_CLOCK_RATE, EncodedPacket, VideoEncoder
from cloudphone.vm.guest import RawFrame, merge_damage

log = logging.getLogger(__name__)

PacketCallback = Callable[[list[EncodedPacket]], None]


@dataclass(slots=True)
class WorkerStats:
    """Counters read by the metrics and the stats channel (plain ints/floats: GIL-atomic)."""

    submitted: int = 0
    dropped: int = 0
    encoded: int = 0
    keyframes: int = 0
    last_encode_ms: float = 0.0
    encode_ms_ewma: float = 0.0
    bytes_out: int = 0


class EncoderWorker:
    """Owns a `VideoEncoder` and the thread that drives it."""

    def __init__(
        self,
        encoder: VideoEncoder,
        on_packets: PacketCallback,
        *,
        idle_refresh_s: float = 1.0,
        name: str = "encoder",
    ) -> None:
        self.encoder = encoder
        self.stats = WorkerStats()
        self._on_packets = on_packets
        self._idle_refresh_s = idle_refresh_s
        self._cond = threading.Condition()
        self._slot: RawFrame | None = None
        self._last: RawFrame | None = None
        self._keyframe_wanted = False
        self._bitrate_wanted: int | None = None
        self._stopping = False
        self._epoch = time.monotonic()
        self._last_pts = -1
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def codec(self) -> str:
        return self.encoder.codec

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, frame: RawFrame) -> None:
        """Hand over a picture; replaces any picture still waiting. Thread-safe, never blocks."""
        with self._cond:
            if self._slot is not None:
                self.stats.dropped += 1
                frame = merge_damage(self._slot, frame)
            self._slot = frame
            self.stats.submitted += 1
            self._cond.notify()

    def request_keyframe(self) -> None:
        """Make the next encoded picture an IDR, re-encoding the last one if the screen is still."""
        with self._cond:
            self._keyframe_wanted = True
            if self._slot is None:
                self._slot = self._repeat_last()
            self._cond.notify()

    def set_bitrate(self, bitrate: int) -> None:
        with self._cond:
            self._bitrate_wanted = bitrate
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and release the encoder. Safe to call twice."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if self._thread.is_alive():  # pragma: no cover - an encoder stuck in C
            log.error("%s did not stop within %.1fs", self._thread.name, timeout)

    def _take(self) -> tuple[RawFrame, bool, int | None] | None:
        with self._cond:
            while self._slot is None and not self._stopping:
                if not self._cond.wait(self._idle_refresh_s):
                    self._slot = self._repeat_last()
            if self._stopping:
                return None
            frame, self._slot = self._slot, None
            assert frame is not None
            force, self._keyframe_wanted = self._keyframe_wanted, False
            bitrate, self._bitrate_wanted = self._bitrate_wanted, None
            self._last = frame
            return frame, force, bitrate

    def _repeat_last(self) -> RawFrame | None:
        """The last picture again, stamped now and with nothing changed (the converter reuses
        its YUV); None before the first picture. Call with the lock held."""
        if self._last is None:
            return None
        return dataclasses.replace(self._last, captured_at=time.monotonic(), damage=())

    def _pts(self, frame: RawFrame) -> int:
        pts = int((frame.captured_at - self._epoch) * VIDEO_CLOCK_RATE)
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        return pts

    def _run(self) -> None:
        try:
            while (job := self._take()) is not None:
                frame, force, bitrate = job
                if bitrate is not None:
                    self.encoder.set_bitrate(bitrate)
                started = time.perf_counter()
                try:
                    packets = self.encoder.encode(frame, self._pts(frame), force)
                except Exception:
                    log.exception("%s: encode failed; picture dropped", self._thread.name)
                    continue
                ms = (time.perf_counter() - started) * 1000.0
                st = self.stats
                st.encoded += 1
                st.last_encode_ms = ms
                st.encode_ms_ewma = ms if st.encoded == 1 else 0.9 * st.encode_ms_ewma + 0.1 * ms
                st.keyframes += sum(1 for p in packets if p.keyframe)
                st.bytes_out += sum(len(p.data) for p in packets)
                if packets:
                    self._on_packets(packets)
        finally:
            self.encoder.close()
