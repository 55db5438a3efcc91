"""`AndroidGuest`: an Android phone over ADB, streamed as H.264 with no edge encode.

The phone's own hardware encoder (driven by scrcpy-server) makes the H.264; the guest hands
each access unit to the pipeline as an `EncodedChunk`, so the edge only packetises. Input is
mapped onto the *current* video size (it changes with rotation) and sent as scrcpy control
messages. When the server dies the guest says so (state RESTARTING) and reconnects with
exponential back-off; when the device sends something impossible (bad header, unknown codec)
the guest closes itself (state FAILED) and nothing else on the edge is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from cloudphone.vm.android import control
from cloudphone.vm.android.adb import AdbClient, AdbError
from cloudphone.vm.android.coords import to_device
from cloudphone.vm.android.options import AndroidOptions
from cloudphone.vm.android.scrcpy_protocol import ProtocolError, Session
from cloudphone.vm.android.server import ScrcpyConnection
from cloudphone.vm.android.stream import AudioPacket, StreamEnded, VideoPacket
from cloudphone.vm.guest import (
    Capabilities,
    EncodedChunk,
    Guest,
    GuestError,
    GuestEventName,
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

#: Event carrying one `AudioPacket` (Opus, 48 kHz) from the device.
AUDIO_EVENT = "audio"

_TOUCH_ACTIONS = {
    "down": control.MotionAction.DOWN,
    "move": control.MotionAction.MOVE,
    "up": control.MotionAction.UP,
    "cancel": control.MotionAction.CANCEL,
}
_NAV_KEYCODES = {
    "back": control.KEYCODE_BACK,
    "home": control.KEYCODE_HOME,
    "recents": control.KEYCODE_APP_SWITCH,
}


class AndroidGuest(Guest):
    """A device reachable through an adb server, streamed through scrcpy-server."""

    def __init__(self, guest_id: str, options: AndroidOptions) -> None:
        super().__init__(guest_id, ScreenGeometry(0, 0))
        self.options = options
        self.adb = AdbClient(options.adb, timeout=options.connect_timeout)
        self.device_name = ""
        self.reconnects = 0
        self.last_error: str | None = None
        self.packets_in = 0
        self.keyframe_requests = 0
        self._conn: ScrcpyConnection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._natural_portrait: bool | None = None
        self._last_reset = 0.0
        self._reset_pending: asyncio.TimerHandle | None = None
        self._awaiting_keyframe = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_spec(cls, guest_id: str, spec: GuestSpec) -> AndroidGuest:
        return cls(guest_id, AndroidOptions.from_mapping(spec.options))

    @property
    def kind(self) -> str:
        return "android"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            multitouch=True,
            max_pointers=10,
            text_input=True,
            clipboard=True,
            rotation=True,
            encoded_output="h264",
        )

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._supervisor is not None and not self._supervisor.done():
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._set_state(GuestState.STARTING)
        try:
            conn = await self._connect()
        except (GuestError, ProtocolError) as exc:
            self.last_error = str(exc)
            self._set_state(GuestState.FAILED)
            raise GuestError(f"{self.guest_id}: {exc}") from exc
        self._set_state(GuestState.RUNNING)
        self._supervisor = asyncio.create_task(
            self._supervise(conn), name=f"android-{self.guest_id}"
        )

    async def stop(self) -> None:
        self._stopping = True
        if self._reset_pending is not None:
            self._reset_pending.cancel()
            self._reset_pending = None
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        self._set_state(GuestState.STOPPED)

    async def _connect(self) -> ScrcpyConnection:
        conn = ScrcpyConnection(
            self.adb,
            self.options,
            on_session=self._on_session,
            on_packet=self._on_packet,
            on_clipboard=self._on_clipboard,
            on_audio=self._on_audio,
        )
        await conn.open()
        self.device_name = conn.device_name
        self._conn = conn
        return conn

    async def _supervise(self, conn: ScrcpyConnection) -> None:
        """Run the connection; reconnect with back-off when the server goes away."""
        opts = self.options
        while True:
            try:
                await conn.run()
            except ProtocolError as exc:
                await self._give_up(conn, f"device sent invalid data: {exc}")
                return
            except (StreamEnded, ConnectionError, OSError, AdbError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                log.warning("%s: stream lost (%s); reconnecting", self.guest_id, self.last_error)
            except Exception as exc:  # a bug must not leave viewers on a silent "running" phone
                log.exception("%s: stream handling failed", self.guest_id)
                await self._give_up(conn, f"internal error: {exc!r}")
                return
            await conn.close()
            self._conn = None
            if self._stopping:
                return
            self._set_state(GuestState.RESTARTING)
            delay = opts.retry_initial_s
            attempts = 0
            while True:
                await asyncio.sleep(delay)
                attempts += 1
                try:
                    conn = await self._connect()
                    break
                except ProtocolError as exc:
                    self._set_state(GuestState.FAILED)
                    self.last_error = f"device sent invalid data: {exc}"
                    log.error("%s: %s; giving up", self.guest_id, self.last_error)
                    return
                except Exception as exc:  # GuestError, or anything unforeseen: keep trying
                    self.last_error = str(exc)
                    log.info("%s: reconnect %d failed: %s", self.guest_id, attempts, exc)
                    if opts.retry_limit and attempts >= opts.retry_limit:
                        self._set_state(GuestState.FAILED)
                        return
                    delay = min(delay * 2, opts.retry_max_s)
            self.reconnects += 1
            self._set_state(GuestState.RUNNING)

    async def _give_up(self, conn: ScrcpyConnection, reason: str) -> None:
        self.last_error = reason
        log.error("%s: %s; closing this guest", self.guest_id, reason)
        await conn.close()
        self._conn = None
        self._set_state(GuestState.FAILED)

    # ---------------------------------------------------------------- video

    def _on_session(self, session: Session) -> None:
        portrait = session.height >= session.width
        if self._natural_portrait is None:
            self._natural_portrait = portrait
        rotation = 0 if portrait == self._natural_portrait else 90
        self._set_screen(ScreenGeometry(session.width, session.height, rotation))

    def _on_packet(self, packet: VideoPacket) -> None:
        self.packets_in += 1
        if packet.keyframe:
            self._awaiting_keyframe = False
        screen = self._screen
        self._push_encoded(
            EncodedChunk(
                data=packet.data,
                codec="h264",
                keyframe=packet.keyframe,
                captured_at=time.monotonic(),
                width=screen.width,
                height=screen.height,
            )
        )

    def request_keyframe(self) -> None:
        """PLI or a new viewer: RESET_VIDEO makes the device restart its encoder with an IDR."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            loop.call_soon_threadsafe(self.request_keyframe)
            return
        conn = self._conn
        if conn is None or not conn.can_control or self._reset_pending is not None:
            return  # a keyframe is already on its way
        if self._awaiting_keyframe and time.monotonic() - self._last_reset < 1.0:
            return  # the IDR of the last RESET_VIDEO has not come yet: it serves this one too
        wait = self._last_reset + self.options.keyframe_min_interval_s - time.monotonic()
        if wait > 0:
            # Too soon after the last RESET_VIDEO (which restarts the encoder): coalesce, but
            # never drop: a viewer joining right after another one still needs its keyframe.
            self._reset_pending = loop.call_later(wait, self._send_reset)
            return
        self._send_reset()

    def _send_reset(self) -> None:
        self._reset_pending = None
        conn = self._conn
        if conn is None or not conn.can_control:
            return
        self._last_reset = time.monotonic()
        self._awaiting_keyframe = True
        self.keyframe_requests += 1
        conn.send(control.reset_video())

    def request_refresh(self) -> None:
        self.request_keyframe()

    # ---------------------------------------------------------------- input

    def _require_conn(self) -> ScrcpyConnection | None:
        conn = self._conn
        if conn is None or self._state != GuestState.RUNNING or not conn.can_control:
            log.debug("%s: input dropped, guest is %s", self.guest_id, self._state)
            return None
        return conn

    async def send_input(self, event: InputEvent) -> None:
        conn = self._require_conn()
        if conn is None:
            return
        if isinstance(event, TouchEvent):
            screen = self._screen
            x, y, w, h = to_device(event.x, event.y, screen.width, screen.height)
            pressure = 0.0 if event.action == "up" else event.pressure
            conn.send(
                control.inject_touch_event(
                    _TOUCH_ACTIONS[event.action], event.pointer_id, x, y, w, h, pressure
                )
            )
        elif isinstance(event, KeyEvent):
            code = control.android_keycode(event.code)
            if code is None:
                log.debug("%s: no Android key for %r", self.guest_id, event.code)
                return
            meta = control.META_SHIFT_ON | control.META_SHIFT_LEFT_ON if event.shift else 0
            actions = {
                "down": (control.KeyAction.DOWN,),
                "up": (control.KeyAction.UP,),
                "press": (control.KeyAction.DOWN, control.KeyAction.UP),
            }[event.action]
            for action in actions:
                conn.send(control.inject_keycode(action, code, 0, meta))
        elif isinstance(event, TextEvent):
            for piece in control.split_text(event.text):
                conn.send(control.inject_text(piece))
        elif isinstance(event, NavEvent):
            code = _NAV_KEYCODES[event.key]
            conn.send(control.inject_keycode(control.KeyAction.DOWN, code))
            conn.send(control.inject_keycode(control.KeyAction.UP, code))

    async def set_clipboard(self, text: str, paste: bool = False) -> bool:
        """Put text on the device clipboard; True once the device acknowledged it."""
        conn = self._require_conn()
        if conn is None:
            return False
        try:
            await conn.set_clipboard(text, paste)
        except (TimeoutError, GuestError):
            return False
        return True

    async def rotate(self) -> None:
        """ROTATE_DEVICE: the device turns; the new size arrives as a new session."""
        conn = self._require_conn()
        if conn is not None:
            conn.send(control.rotate_device())

    @property
    def audio_codec(self) -> str | None:
        """ "opus" while the device streams audio (Android 11+, `audio` on), else None."""
        conn = self._conn
        return conn.audio_codec if conn is not None else None

    def _on_audio(self, packet: AudioPacket) -> None:
        """Opus packets go out as `audio` events: `edge.audio_track` passes them through."""
        self.events.emit(AUDIO_EVENT, packet)

    def _on_clipboard(self, text: str) -> None:
        self.events.emit(GuestEventName.CLIPBOARD, text)
