"""The embedded simulated phone: a `Guest` that renders its UI on change, off the event loop.

It renders when something changed (input, the clock's minute, a viewer asking for a picture),
immediately after an input lands, and never faster than `fps`. Input is queued and applied on
the render thread, so the UI state has a single owner and the loop only appends to a deque.
With `stamp=True` each frame carries the latency probe (`vm.stamp`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from cloudphone.vm.guest import (
    Capabilities,
    Guest,
    GuestEventName,
    GuestState,
    InputEvent,
    RawFrame,
    ScreenGeometry,
    TelephonyRequest,
)
from cloudphone.vm.simulated.ui import PhoneUI

log = logging.getLogger(__name__)


class SimulatedPhone(Guest):
    def __init__(
        self,
        guest_id: str,
        *,
        width: int = 720,
        height: int = 1280,
        fps: int = 30,
        stamp: bool = False,
    ) -> None:
        super().__init__(guest_id, ScreenGeometry(width, height))
        self.fps = fps
        self.stamp = stamp
        self.frames_rendered = 0
        self.render_ms = 0.0
        # (stamped frame counter, wall time rendered): lets a benchmark on this machine line up
        # the browser's display time of a frame with when it was drawn.
        self.frame_log: collections.deque[dict[str, float | int | None]] = collections.deque(
            maxlen=8192
        )
        self._arrivals: dict[int, float] = {}  # input seq -> wall time it reached the phone
        self._ui: PhoneUI | None = None
        self._pending: collections.deque[InputEvent] = collections.deque()
        self._input_seq = 0
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.clipboard = ""
        # Telephony requests sent out and the answers the edge gave, in order.
        self.telephony_sent: list[TelephonyRequest] = []
        self.telephony_answers: dict[str, str] = {}
        self._answers: collections.deque[tuple[str, str, str]] = collections.deque()
        self._request_counter = 0

    @property
    def kind(self) -> str:
        return "simulated"

    @property
    def ui(self) -> PhoneUI | None:
        """The phone's UI state, for inspection (owned by the render thread: read, never write)."""
        return self._ui

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            multitouch=True, max_pointers=10, text_input=True, clipboard=True, telephony=True
        )

    async def start(self) -> None:
        if self.state == GuestState.RUNNING:
            return
        self._set_state(GuestState.STARTING)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"render-{self.guest_id}")
        loop = asyncio.get_running_loop()
        self._loop = loop
        width, height = self.screen.width, self.screen.height
        self._ui = await loop.run_in_executor(self._executor, PhoneUI, width, height)
        self._dirty = asyncio.Event()
        self._dirty.set()
        self._tasks = [
            asyncio.create_task(self._render_loop(), name=f"render-{self.guest_id}"),
            asyncio.create_task(self._clock_loop(), name=f"clock-{self.guest_id}"),
        ]
        self._set_state(GuestState.RUNNING)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._pending.clear()
        self._set_state(GuestState.STOPPED)

    async def send_input(self, event: InputEvent) -> None:
        if self.state != GuestState.RUNNING:
            log.info("%s: %s dropped, phone is %s", self.guest_id, type(event).__name__, self.state)
            return
        self._pending.append(event)
        if self.stamp and event.seq:
            self._arrivals[event.seq] = time.time()
        self._dirty.set()

    async def set_clipboard(self, text: str) -> bool:
        """The browser pasted into the phone (the edge already applied the policy)."""
        self.clipboard = text
        return True

    def copy(self, text: str) -> None:
        """An app on the phone copied `text`: the clipboard changes and the edge hears of it."""
        self.clipboard = text
        self.events.emit(GuestEventName.CLIPBOARD, text)

    async def answer_telephony(self, request_id: str, result: str) -> None:
        self.telephony_answers[request_id] = result
        request = next((r for r in self.telephony_sent if r.request_id == request_id), None)
        if request is not None:
            self._answers.append((request.kind, request.number, result))
            self._dirty.set()

    def _emit_soon(self, event: str, value: object) -> None:
        """From the render thread: emit a guest event on the event loop."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._emit_now, event, value)

    def _emit_now(self, event: str, value: object) -> None:
        if isinstance(value, TelephonyRequest):
            self.telephony_sent.append(value)
        elif isinstance(value, str):
            self.clipboard = value
        self.events.emit(event, value)

    def request_refresh(self) -> None:
        if self.state == GuestState.RUNNING:
            self._dirty.set()

    async def _render_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.fps
        last = -interval
        while True:
            await self._dirty.wait()
            delay = last + interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._dirty.clear()
            last = loop.time()
            try:
                await loop.run_in_executor(self._executor, self._render_once)
            except Exception:
                log.exception("%s: render failed", self.guest_id)

    def _render_once(self) -> None:
        """Runs on the render thread: apply queued input, draw, push the frame."""
        ui = self._ui
        assert ui is not None
        started = time.perf_counter()
        render_start = time.time()
        while self._pending:
            event = self._pending.popleft()
            ui.apply(event)
            self._input_seq = max(self._input_seq, event.seq)
        while self._answers:
            ui.telephony_result(*self._answers.popleft())
        for kind, first, second in ui.outbox:
            if kind == "clipboard":
                self._emit_soon(GuestEventName.CLIPBOARD, first)
            else:
                self._request_counter += 1
                request_id = f"{self.guest_id}-{self._request_counter}"
                request = TelephonyRequest(request_id, kind, first, second)  # type: ignore[arg-type]
                self._emit_soon(GuestEventName.TELEPHONY, request)
        ui.outbox.clear()
        image = ui.render(self._input_seq, self.frames_rendered, self.stamp)
        if self.stamp:
            arrived = self._arrivals.pop(self._input_seq, None)
            if len(self._arrivals) > 1024:
                self._arrivals.clear()
            self.frame_log.append(
                {
                    "frame": self.frames_rendered & 0xFFFF,
                    "frameId": self.frames_rendered,
                    "inputSeq": self._input_seq,
                    "inputAt": arrived,
                    "renderStart": render_start,
                    "renderEnd": time.time(),
                }
            )
        self.frames_rendered += 1
        self.render_ms = (time.perf_counter() - started) * 1000.0
        self._push_frame(
            RawFrame(
                image,
                "rgb24",
                time.monotonic(),
                self._input_seq,
                self.frames_rendered - 1,
                ui.last_damage,
            )
        )

    async def _clock_loop(self) -> None:
        while True:
            await asyncio.sleep(60.5 - time.time() % 60)
            self._dirty.set()
