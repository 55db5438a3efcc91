"""Event-loop lag: how late a 50 ms sleep wakes up, kept as a rolling window.

Encoding, conversion and blocking calls must stay off the loop; this is how we prove it. The
figures are served on `/healthz` and read by the benchmarks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time

import numpy as np

INTERVAL_S = 0.05


class LoopLagMonitor:
    def __init__(self, window: int = 1200) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=window)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(INTERVAL_S)
            self._samples.append(max(0.0, time.perf_counter() - started - INTERVAL_S) * 1000.0)

    def summary(self) -> dict[str, float]:
        if not self._samples:
            return {"samples": 0}
        data = np.fromiter(self._samples, float)
        return {
            "samples": len(data),
            "p50_ms": round(float(np.percentile(data, 50)), 2),
            "p99_ms": round(float(np.percentile(data, 99)), 2),
            "max_ms": round(float(data.max()), 2),
        }

    def reset(self) -> None:
        self._samples.clear()
