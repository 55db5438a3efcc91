"""Turns viewers' bandwidth estimates (REMB) into encoder bitrate changes.

One encode serves every viewer of a codec, so the target is the *lowest* estimate among them
(a viewer on a poor link would otherwise drown), times a safety margin, within the configured
bounds. Each change costs an IDR (see `codecs.ffmpeg_encoder`), so small moves are ignored and
upward moves are spaced out; a sharp drop is applied at once because congestion hurts more than
a keyframe.

A phone screen is mostly still, so the stream is usually *application-limited*: it sends far
less than its target. A receiver-side estimator then sees a trickle, and one delay blip (a
keyframe burst) makes it answer "0.85 x what arrived" -- a few kbit/s that say nothing about the
link. Followed blindly, the encoder sat at the minimum with a tiny VBV when the user touched the
screen again. So while the stream sent under half its target over the last two seconds,
estimates may raise the target but not lower it; once it sends for real, a drop counts again.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

HEADROOM = 0.85
MIN_RELATIVE_CHANGE = 0.25
MIN_INTERVAL_S = 3.0
URGENT_DROP = 0.6
SENT_WINDOW_S = 2.0
APP_LIMITED_SHARE = 0.5


class BitrateController:
    def __init__(
        self,
        initial: int,
        minimum: int,
        maximum: int,
        apply: Callable[[int], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.current = initial
        self.minimum = minimum
        self.maximum = maximum
        self.apply = apply
        self._clock = clock
        self._estimates: dict[object, int] = {}
        self._last_change = -MIN_INTERVAL_S
        self._sent: collections.deque[tuple[float, int]] = collections.deque()
        self._sent_bytes = 0

    def note_sent(self, nbytes: int) -> None:
        """The stream sent an encoded picture of `nbytes` (once, however many viewers)."""
        now = self._clock()
        self._sent.append((now, nbytes))
        self._sent_bytes += nbytes
        self._expire(now)

    def sent_bps(self) -> float:
        """What the stream actually sent over the last `SENT_WINDOW_S`."""
        self._expire(self._clock())
        return self._sent_bytes * 8 / SENT_WINDOW_S

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - SENT_WINDOW_S:
            self._sent_bytes -= self._sent.popleft()[1]

    def report(self, viewer: object, estimate_bps: int) -> None:
        self._estimates[viewer] = estimate_bps
        self._update()

    def forget(self, viewer: object) -> None:
        if self._estimates.pop(viewer, None) is not None:
            self._update()

    def _update(self) -> None:
        if not self._estimates:
            return
        target = int(min(self._estimates.values()) * HEADROOM)
        target = max(self.minimum, min(self.maximum, target))
        change = abs(target - self.current) / self.current
        now = self._clock()
        if target < self.current and self.sent_bps() < self.current * APP_LIMITED_SHARE:
            return  # application-limited: the estimate only saw what we chose to send
        urgent = target < self.current * URGENT_DROP
        if change < MIN_RELATIVE_CHANGE and not urgent:
            return
        if not urgent and now - self._last_change < MIN_INTERVAL_S:
            return
        self.current = target
        self._last_change = now
        self.apply(target)
