"""The slow path, for devices where scrcpy-server cannot run: `screenrecord` + `input`.

Every Android since 4.4 ships `screenrecord`, which writes raw H.264 to stdout with
`--output-format=h264` — still passthrough, no edge encode — but it is clearly worse than
scrcpy, and the guest logs and reports itself as such:

* it stops by itself after at most 180 s, so it is restarted before (`--time-limit 170`);
* it cannot be asked for a keyframe: a keyframe request restarts it (rate-limited);
* its byte stream has no framing, so access units are cut at NAL boundaries here, which holds
  each picture until the next one starts (one frame of extra latency);
* input goes through one persistent shell running `input` (a Java process per command, a few
  hundred ms each), single touch only; no clipboard.

The picture keeps the orientation the device had when recording started; a rotation restarts
the recording so the picture follows, and until then touches are turned through the
difference (`coords.to_device`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import time

from cloudphone.vm.android import annexb
from cloudphone.vm.android.adb import AdbClient, AdbError, AdbStream
from cloudphone.vm.android.control import android_keycode
from cloudphone.vm.android.coords import to_device
from cloudphone.vm.android.options import AndroidOptions
from cloudphone.vm.guest import (
    Capabilities,
    EncodedChunk,
    Guest,
    GuestError,
    GuestState,
    InputEvent,
    KeyEvent,
    NavEvent,
    ScreenGeometry,
    TextEvent,
    TouchEvent,
)
from cloudphone.vm.pool import GuestSpec

log = logging.getLogger(__name__)

_NAV = {"back": 4, "home": 3, "recents": 187}
_MOTION = {"down": "DOWN", "move": "MOVE", "up": "UP", "cancel": "CANCEL"}
_SIZE_RE = re.compile(r"(Physical|Override) size:\s*(\d+)x(\d+)")
_ORIENTATION_RE = re.compile(r"SurfaceOrientation:\s*(\d)")
MAX_BUFFERED = 8 * 1024 * 1024  # an access unit bigger than this is not H.264 from screenrecord


class AccessUnitSplitter:
    """Cuts an unframed Annex-B stream into access units (a new one starts at an AUD, SPS,
    PPS, SEI or a slice whose first_mb_in_slice is 0)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._au = bytearray()
        self._au_slices = False
        self._au_key = False

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        self._buf += data
        out: list[tuple[bytes, bool]] = []
        buf = self._buf
        first = buf.find(b"\x00\x00\x01")
        if first == -1:
            if len(buf) > MAX_BUFFERED:
                raise ValueError("no H.264 start code in the screenrecord stream")
            return out
        pos = first + 3
        while True:
            nxt = buf.find(b"\x00\x00\x01", pos)
            if nxt == -1:
                break
            end = nxt - 1 if nxt > pos and buf[nxt - 1] == 0 else nxt
            if end > pos:
                self._add(bytes(buf[pos:end]), out)
            pos = nxt + 3
        del buf[: pos - 3]
        if len(buf) > MAX_BUFFERED:
            raise ValueError("screenrecord access unit too large")
        return out

    def flush(self) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        tail = bytes(self._buf)
        self._buf.clear()
        if tail.startswith(b"\x00\x00\x01") and len(tail) > 3:
            self._add(tail[3:], out)
        if self._au_slices:
            out.append((bytes(self._au), self._au_key))
        self._au.clear()
        self._au_slices = self._au_key = False
        return out

    def _add(self, nal: bytes, out: list[tuple[bytes, bool]]) -> None:
        kind = nal[0] & 0x1F
        is_slice = kind in (annexb.NAL_SLICE, annexb.NAL_IDR)
        starts_au = kind in (annexb.NAL_AUD, annexb.NAL_SPS, annexb.NAL_PPS, annexb.NAL_SEI) or (
            is_slice and len(nal) > 1 and nal[1] & 0x80  # first_mb_in_slice == 0 (ue "1")
        )
        if starts_au and self._au_slices:
            out.append((bytes(self._au), self._au_key))
            self._au.clear()
            self._au_slices = self._au_key = False
        self._au += b"\x00\x00\x00\x01" + nal
        if is_slice:
            self._au_slices = True
            self._au_key = self._au_key or kind == annexb.NAL_IDR


def recording_size(width: int, height: int, max_size: int) -> tuple[int, int]:
    """Fit (width, height) into max_size on the long side, multiples of 8 (encoder friendly)."""
    if max_size and max(width, height) > max_size:
        scale = max_size / max(width, height)
        width, height = round(width * scale), round(height * scale)
    return max(8, width // 8 * 8), max(8, height // 8 * 8)


def input_text_argument(text: str) -> str | None:
    """`input text` takes one shell word, spaces as %s, ASCII only; None when it cannot."""
    if not text or not text.isascii() or not text.isprintable():
        return None
    return shlex.quote(text.replace("%", "\\%").replace(" ", "%s"))


class ScreenrecordGuest(Guest):
    """An Android device streamed by `screenrecord`, driven by `input`: the slow path."""

    def __init__(self, guest_id: str, options: AndroidOptions) -> None:
        super().__init__(guest_id, ScreenGeometry(0, 0))
        self.options = options
        self.adb = AdbClient(options.adb, timeout=options.connect_timeout)
        self.natural = (0, 0)  # the display in orientation 0, in device pixels
        self.orientation = 0  # current Surface.ROTATION_* (0..3)
        self.recordings = 0
        self.input_commands = 0
        self.last_error: str | None = None
        self._recorded_orientation = 0
        self._shell: AdbStream | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._record: AdbStream | None = None
        self._restart = asyncio.Event()
        self._stopping = False
        self._parameter_sets = b""
        self._last_restart = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_spec(cls, guest_id: str, spec: GuestSpec) -> ScreenrecordGuest:
        return cls(guest_id, AndroidOptions.from_mapping(spec.options))

    @property
    def kind(self) -> str:
        return "android-screenrecord"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            multitouch=False, max_pointers=1, text_input=True, clipboard=False, rotation=True,
            encoded_output="h264",
        )  # fmt: skip

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._set_state(GuestState.STARTING)
        serial = self.options.serial
        log.warning(
            "%s: Android %s on the screenrecord fallback (slow path: single touch, input via"
            " shell, restarts every %d s)",
            self.guest_id,
            serial,
            self.options.screenrecord_time_limit_s,
        )
        try:
            self.natural = await self._display_size()
            self.orientation = await self._orientation()
            self._shell = await self.adb.open_shell(serial, "sh")
        except (AdbError, ValueError) as exc:
            self.last_error = str(exc)
            self._set_state(GuestState.FAILED)
            raise GuestError(f"{self.guest_id}: {exc}") from exc
        self._tasks = [
            asyncio.create_task(self._record_loop(), name=f"screenrecord-{self.guest_id}"),
            asyncio.create_task(self._watch_orientation()),
        ]
        self._set_state(GuestState.RUNNING)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        for stream in (self._record, self._shell):
            if stream is not None:
                await stream.close()
        self._record = self._shell = None
        self._set_state(GuestState.STOPPED)

    async def _display_size(self) -> tuple[int, int]:
        text = (await self.adb.shell(self.options.serial, "wm size")).decode("utf-8", "replace")
        sizes = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in _SIZE_RE.finditer(text)}
        size = sizes.get("Override") or sizes.get("Physical")
        if size is None:
            raise ValueError(f"cannot read the display size from {text.strip()!r}")
        return size

    async def _orientation(self) -> int:
        out = await self.adb.shell(self.options.serial, "dumpsys input")
        match = _ORIENTATION_RE.search(out.decode("utf-8", "replace"))
        return int(match.group(1)) % 4 if match else 0

    def _current_display(self) -> tuple[int, int]:
        w, h = self.natural
        return (h, w) if self.orientation % 2 else (w, h)

    async def _watch_orientation(self, period: float = 1.0) -> None:
        while True:
            await asyncio.sleep(period)
            with contextlib.suppress(AdbError, TimeoutError):
                orientation = await self._orientation()
                if orientation != self.orientation:
                    self.orientation = orientation
                    self._restart.set()  # re-record so the picture turns with the UI

    async def _record_loop(self) -> None:
        opts = self.options
        failures = 0
        while not self._stopping:
            self._recorded_orientation = self.orientation
            width, height = recording_size(*self._current_display(), opts.max_size)
            command = (
                f"screenrecord --output-format=h264 --size {width}x{height}"
                f" --bit-rate {opts.bit_rate} --time-limit {opts.screenrecord_time_limit_s} -"
            )
            started = time.monotonic()
            units = 0
            try:
                self._record = await self.adb.exec_out(opts.serial, command)
                self.recordings += 1
                self._restart.clear()
                rotation = self._recorded_orientation * 90
                self._set_screen(ScreenGeometry(width, height, rotation))
                units = await self._pump(self._record, width, height)
            except (AdbError, OSError, ValueError) as exc:
                self.last_error = str(exc)
                log.warning("%s: screenrecord failed: %s", self.guest_id, exc)
            finally:
                if self._record is not None:
                    await self._record.close()
                    self._record = None
            if self._stopping:
                return
            if units == 0 and time.monotonic() - started < 1.0:
                failures += 1
                self._set_state(GuestState.RESTARTING)
                if opts.retry_limit and failures >= opts.retry_limit:
                    self._set_state(GuestState.FAILED)
                    return
                await asyncio.sleep(
                    min(opts.retry_initial_s * 2 ** (failures - 1), opts.retry_max_s)
                )
            else:
                failures = 0
                self._set_state(GuestState.RUNNING)

    async def _pump(self, stream: AdbStream, width: int, height: int) -> int:
        splitter = AccessUnitSplitter()
        units = 0
        restart = asyncio.create_task(self._restart.wait())
        try:
            while True:
                read = asyncio.create_task(stream.reader.read(65536))
                done, _ = await asyncio.wait({read, restart}, return_when=asyncio.FIRST_COMPLETED)
                if restart in done:
                    read.cancel()
                    return units
                data = read.result()
                found = splitter.feed(data) if data else splitter.flush()
                for au, key in found:
                    units += 1
                    self._emit(au, key, width, height)
                if not data:
                    return units
        finally:
            restart.cancel()

    def _emit(self, au: bytes, key: bool, width: int, height: int) -> None:
        types = annexb.nal_types(au)
        if annexb.NAL_SPS in types:
            config, _ = annexb.split_parameter_sets(au)
            self._parameter_sets = config
        elif key and self._parameter_sets:
            au = self._parameter_sets + au  # MediaCodec writes SPS/PPS once; viewers need them
        self._push_encoded(EncodedChunk(au, "h264", key, time.monotonic(), width, height))

    def request_keyframe(self) -> None:
        """screenrecord cannot make an IDR on demand: restart it (at most every 2 s)."""
        now = time.monotonic()
        if now - self._last_restart < 2.0 or self._loop is None:
            return
        self._last_restart = now
        self._loop.call_soon_threadsafe(self._restart.set)

    async def _run(self, command: str) -> None:
        shell = self._shell
        if shell is None or self._state != GuestState.RUNNING:
            return
        shell.writer.write(command.encode() + b"\n")
        self.input_commands += 1
        await shell.writer.drain()

    async def send_input(self, event: InputEvent) -> None:
        if isinstance(event, TouchEvent):
            if event.pointer_id != 0:
                return  # `input` has one pointer
            screen = self._screen
            turn = ((self.orientation - self._recorded_orientation) % 4) * 90
            x, y, w, h = to_device(event.x, event.y, screen.width, screen.height, turn)
            dw, dh = self._current_display()
            dx, dy = x * dw // w, y * dh // h
            await self._run(f"input motionevent {_MOTION[event.action]} {dx} {dy}")
        elif isinstance(event, KeyEvent):
            code = android_keycode(event.code)
            if code is not None and event.action in ("down", "press"):
                await self._run(f"input keyevent {code}")
        elif isinstance(event, NavEvent):
            await self._run(f"input keyevent {_NAV[event.key]}")
        elif isinstance(event, TextEvent):
            arg = input_text_argument(event.text)
            if arg is None:
                log.info("%s: `input text` cannot type %r (ASCII only)", self.guest_id, event.text)
                return
            await self._run(f"input text {arg}")
