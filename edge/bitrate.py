"""Turns viewers' bandwidth estimates (REMB) into encoder bitrate changes.

One encode serves every viewer of a codec, so the target is the *lowest* estimate among them
(a viewer on a poor link would otherwise drown), times a safety margin, within the configured
bounds. Each change costs an IDR (see `codecs.ffmpeg_encoder`), so small moves are ignored and
upward moves are spaced out; a sharp drop is applied at once because congestion hurts more than
a keyframe.
"""

from __future__ import annotations

import time
from collections.abc import Callable

HEADROOM = 0.85
MIN_RELATIVE_CHANGE = 0.25
MIN_INTERVAL_S = 3.0
URGENT_DROP = 0.6


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
        urgent = target < self.current * URGENT_DROP
        if change < MIN_RELATIVE_CHANGE and not urgent:
            return
        if not urgent and now - self._last_change < MIN_INTERVAL_S:
            return
        self.current = target
        self._last_change = now
        self.apply(target)
