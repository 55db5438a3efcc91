"""`QemuGuest`: a QEMU virtual machine as a cloud phone behind the edge.

Composition: `QemuProcess` (spawn, QMP, stop), a display source — `RfbClient` (VNC on a unix
socket with a keepalive, the default: lowest input->frame latency measured on these machines,
benchmarks/RESULTS.md) or `DbusDisplay` (QEMU's p2p D-Bus display: QEMU pushes damage, nothing
to keep alive, ~10 ms slower here) — and `keymap` (input translation). Input goes over
QMP `input-send-event` (~2 ms round trip), virtio-keyboard for keys. Touch: where the binary
has `virtio-multitouch-pci` (QEMU >= 8.1, found by asking the binary at start, never by its
version string) every finger goes to a slot as `mtt` events (`multitouch.SlotMapper`) and the
capabilities say 10 pointers; otherwise (Debian 12's QEMU 7.2) virtio-tablet absolute axes
carry the first finger only, the capabilities say one pointer and the page adapts.

Supervision: a watcher waits for the first of "QEMU exited", "display connection closed" and
"QMP disconnected"; unless we are stopping, that is a crash: viewers see `RESTARTING`, the
guest is booted again (bounded by `RestartPolicy`) and `RUNNING` follows, or `FAILED` when
restarts are used up.

Latency stamps: the recipe guest (`phone.c`) draws the `vm.stamp` strip with the number of
input reports it has applied. This class counts the reports it sends (one per
`input-send-event` that changes a key or the pointer, the same rule the guest kernel applies
when it drops no-op events), maps that count back to the edge's input sequence number and
rewrites the strip in the captured frame, so downstream the stamp means what it means for the
simulated phone. Frames without a stamp (other guests) pass unchanged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from cloudphone.vm.guest import (
    Capabilities,
    Guest,
    GuestError,
    GuestState,
    InputEvent,
    KeyEvent,
    NavEvent,
    RawFrame,
    ScreenGeometry,
    TextEvent,
    TouchEvent,
)
from cloudphone.vm.qemu.accel import choose_accel
from cloudphone.vm.qemu.dbus_display import DbusDisplay
from cloudphone.vm.qemu.keymap import NAV_TO_QCODE, qcode_for_dom, strokes_for_text
from cloudphone.vm.qemu.multitouch import MAX_SLOTS, SlotMapper
from cloudphone.vm.qemu.process import QemuConfig, QemuProcess, probe_multitouch
from cloudphone.vm.qemu.rfb import PIXEL_FORMAT_NAME, Damage, RfbClient
from cloudphone.vm.stamp import draw_stamp, read_stamp, strip_height
from qemu.qmp import QMPError, Runstate

log = logging.getLogger(__name__)

ABS_MAX = 0x7FFF  # QEMU's absolute axis range is 0..0x7FFF
QmpEvent = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """At most `max_restarts` within `window_s`; wait `backoff_s` before each boot."""

    max_restarts: int = 5
    window_s: float = 60.0
    backoff_s: float = 0.2


def _key(qcode: str, down: bool) -> QmpEvent:
    return {"type": "key", "data": {"down": down, "key": {"type": "qcode", "data": qcode}}}


class QemuGuest(Guest):
    """Boots `config`, streams its screen and forwards input, restarting it when it dies."""

    _reports_sent: int
    _seq_by_report: collections.deque[tuple[int, int]]
    _last_seq: int
    _last_shown_seq: int
    _pressed: set[str]
    _abs: tuple[int, int] | None
    _button: bool
    _pointer: int | None

    def __init__(
        self,
        guest_id: str,
        config: QemuConfig,
        *,
        restart: RestartPolicy | None = None,
        boot_timeout: float = 90.0,  # TCG on a busy 2-core host can take 30+ s
        ready_on_stamp: bool = True,
        keepalive: float | None = 0.02,
    ) -> None:
        super().__init__(guest_id, ScreenGeometry(config.width, config.height))
        self.config = config
        self.restart_policy = restart or RestartPolicy()
        self.boot_timeout = boot_timeout
        # The recipe guest is ready when its program draws the stamp; any other guest when its
        # display first shows the configured size (not the firmware's text mode).
        self.ready_on_stamp = ready_on_stamp
        self.keepalive = keepalive
        self.process: QemuProcess | None = None
        self._rfb: RfbClient | None = None
        self._display: RfbClient | DbusDisplay | None = None
        self._capture: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._run_dir: Path | None = None
        self._stopping = False
        self._first_frame = asyncio.Event()
        self._input_lock = asyncio.Lock()
        self._restarts: collections.deque[float] = collections.deque()
        self.restart_count = 0
        self.boot_to_first_frame: float | None = None
        self.frames = 0
        self._pushed_since_boot = False
        self._slots = SlotMapper(guest_id)
        self._reset_input_state()

    # ------------------------------------------------------------------ Guest API

    @property
    def capabilities(self) -> Capabilities:
        if self.config.multitouch:
            return Capabilities(
                multitouch=True, max_pointers=MAX_SLOTS, text_input=True, rotation=True
            )
        # single touch, also while a probe has not answered yet (never promise too much)
        return Capabilities(multitouch=False, max_pointers=1, text_input=True, rotation=True)

    @property
    def kind(self) -> str:
        return "qemu"

    async def start(self) -> None:
        if self.state in (GuestState.RUNNING, GuestState.STARTING, GuestState.RESTARTING):
            return
        self._stopping = False
        self._set_state(GuestState.STARTING)
        if self.config.accel == "auto":
            self.config = replace(
                self.config, accel=await choose_accel(self.config, self.ready_on_stamp)
            )
        if self.config.multitouch is None:
            try:
                multitouch = await probe_multitouch(self.config)
            except GuestError:
                self._set_state(GuestState.FAILED)  # no binary: booting would say the same
                raise
            self.config = replace(self.config, multitouch=multitouch)
        safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", self.guest_id)[:40]
        self._run_dir = Path(tempfile.mkdtemp(prefix=f"cloudphone-qemu-{safe_id}-"))
        try:
            await self._boot()
        except BaseException:
            await self._teardown()
            self._remove_run_dir()
            # stopped while booting (edge shutting down) is a stop, not a failure
            self._set_state(GuestState.STOPPED if self._stopping else GuestState.FAILED)
            raise
        if self._stopping:  # stop() ran while we booted and already tore everything down
            return
        self._set_state(GuestState.RUNNING)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def stop(self) -> None:
        self._stopping = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await supervisor
        await self._teardown()
        self._remove_run_dir()
        self._set_state(GuestState.STOPPED)

    async def send_input(self, event: InputEvent) -> None:
        process = self.process
        qmp = process.qmp if process is not None else None
        if self.state != GuestState.RUNNING or qmp is None:
            log.info("%s: guest %s, dropping input %r", self.guest_id, self.state, event)
            return
        reports = self._translate(event)
        if not reports:
            return
        async with self._input_lock:
            # Map the guest's report counts to seqs *before* sending: the guest may draw (and
            # the frame arrive) before QMP's reply does. Intermediate reports of a multi-report
            # input (text) keep the previous seq; only the last carries this event's.
            for i in range(len(reports)):
                final = i == len(reports) - 1
                self._reports_sent += 1
                self._seq_by_report.append(
                    (self._reports_sent, event.seq if final else self._last_seq)
                )
            self._last_seq = event.seq
            try:
                for events in reports:
                    await qmp.execute("input-send-event", {"events": events})
            except Exception as exc:  # QEMU is going away; a restart resets both counts
                log.warning("%s: input dropped, QMP failed: %s", self.guest_id, exc)
                return
        if self._rfb is not None:
            self._rfb.poke()

    def request_refresh(self) -> None:
        """Push the current picture again (a viewer joined): an idle guest sends no damage."""
        display = self._display
        if display is not None and self._first_frame.is_set():
            self._on_update(display.framebuffer, time.monotonic(), ())

    # ------------------------------------------------------------------ boot and supervision

    async def _boot(self) -> None:
        assert self._run_dir is not None
        self._reset_input_state()
        self._first_frame.clear()
        self._pushed_since_boot = False
        process = QemuProcess(self.config, self._run_dir)
        self.process = process
        started = time.monotonic()
        await process.start()
        deadline = started + self.boot_timeout
        display: RfbClient | DbusDisplay
        if self.config.capture == "dbus":
            display = DbusDisplay(process.qmp, self._on_update, self._on_resize)
            try:
                await display.connect()
            except (OSError, QMPError) as exc:
                raise GuestError(f"cannot attach to QEMU's D-Bus display: {exc!r}") from exc
        else:
            display = rfb = RfbClient(
                process.vnc_path, self._on_update, self._on_resize, keepalive=self.keepalive
            )
            while True:
                try:
                    await rfb.connect()
                    break
                except OSError as exc:
                    if not process.running or time.monotonic() > deadline:
                        raise GuestError(f"cannot reach QEMU's VNC socket: {exc}") from exc
                    await asyncio.sleep(0.05)
            self._rfb = rfb
        self._display = display
        self._capture = asyncio.get_running_loop().create_task(display.run())
        waiter = asyncio.ensure_future(self._first_frame.wait())
        exited = asyncio.ensure_future(process.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, exited, self._capture},
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            waiter.cancel()
            exited.cancel()
        if waiter not in done:
            tail = process.serial_tail(400).strip() or process.error_tail()
            why = "exited" if not process.running else f"showed nothing in {self.boot_timeout} s"
            raise GuestError(f"qemu guest {why}; last output: {tail}")
        self.boot_to_first_frame = time.monotonic() - started
        log.info("%s: first frame %.2f s after start", self.guest_id, self.boot_to_first_frame)

    async def _supervise(self) -> None:
        """Restart the guest when QEMU, its display connection or QMP goes away."""
        while not self._stopping:
            reason = await self._wait_for_fault()
            if self._stopping:
                return
            log.warning("%s: %s; restarting", self.guest_id, reason)
            while True:  # boot attempts until one shows a frame or the policy says stop
                if not self._may_restart():
                    log.error("%s: restarts used up, giving up", self.guest_id)
                    await self._teardown()
                    self._set_state(GuestState.FAILED)
                    return
                self._set_state(GuestState.RESTARTING)
                await self._teardown()
                await asyncio.sleep(self.restart_policy.backoff_s)
                try:
                    await self._boot()
                    break
                except GuestError as exc:
                    log.error("%s: restart failed: %s", self.guest_id, exc)
            self.restart_count += 1
            self._set_state(GuestState.RUNNING)

    async def _wait_for_fault(self) -> str:
        process = self.process
        capture = self._capture
        if process is None or capture is None or not process.running:
            return "qemu is not running"
        tasks: dict[asyncio.Future[Any], str] = {
            asyncio.ensure_future(process.wait()): "qemu exited",
            asyncio.ensure_future(asyncio.shield(capture)): "display connection closed",
        }
        qmp = process.qmp
        if qmp is not None:
            tasks[asyncio.ensure_future(self._qmp_gone(qmp))] = "QMP disconnected"
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
        return next(tasks[t] for t in done)

    @staticmethod
    async def _qmp_gone(qmp: Any) -> None:
        while qmp.runstate == Runstate.RUNNING:
            await qmp.runstate_changed()

    def _may_restart(self) -> bool:
        now = time.monotonic()
        policy = self.restart_policy
        while self._restarts and now - self._restarts[0] > policy.window_s:
            self._restarts.popleft()
        if len(self._restarts) >= policy.max_restarts:
            return False
        self._restarts.append(now)
        return True

    async def _teardown(self) -> None:
        capture, self._capture = self._capture, None
        display, self._display = self._display, None
        self._rfb = None
        if capture is not None:
            capture.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await capture
        if display is not None:
            await display.close()
        process, self.process = self.process, None
        if process is not None:
            await process.stop()

    def _remove_run_dir(self) -> None:
        run_dir, self._run_dir = self._run_dir, None
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)

    # ------------------------------------------------------------------ frames

    def _on_resize(self, width: int, height: int) -> None:
        if self._first_frame.is_set():  # boot-time text modes are not the phone's screen
            self._set_screen(ScreenGeometry(width, height))

    def _on_update(self, framebuffer: np.ndarray, received_at: float, damage: Damage) -> None:
        """A new picture from the display: copy it, map its stamp to the edge's seq, push it.
        `damage` (changed row bands) lets the converter redo only those rows."""
        if framebuffer.size == 0:
            return
        data = framebuffer.copy()  # the frame must own its pixels; ~1 ms for 720x1280
        stamp = read_stamp(data)
        seq = self._last_shown_seq
        if stamp is not None:
            seq = self._seq_for_report(stamp.input_seq)
            draw_stamp(data, seq, stamp.frame)
            if damage is not None:
                damage = ((0, strip_height(data.shape[0])), *damage)
            self._last_shown_seq = seq
            if not self._first_frame.is_set():
                self._set_screen(ScreenGeometry(data.shape[1], data.shape[0]))
                self._first_frame.set()
        elif not self._first_frame.is_set():
            size = (data.shape[1], data.shape[0])
            if self.ready_on_stamp or size != (self.config.width, self.config.height):
                return  # still booting: the firmware/console picture is not for viewers
            self._set_screen(ScreenGeometry(*size))
            self._first_frame.set()
        if not self._pushed_since_boot:  # the pipeline's last picture is from before the boot
            damage, self._pushed_since_boot = None, True
        self.frames += 1
        self._push_frame(
            RawFrame(
                data=data,
                pixel_format=PIXEL_FORMAT_NAME,
                captured_at=received_at,
                input_seq=seq,
                frame_id=self.frames,
                damage=damage,
            )
        )

    def _seq_for_report(self, shown: int) -> int:
        """The edge seq of the input whose last report is `shown` (16-bit count from the guest)."""
        for count, seq in reversed(self._seq_by_report):
            if count & 0xFFFF == shown:
                return seq
        return self._last_shown_seq if shown else 0

    # ------------------------------------------------------------------ input

    def _reset_input_state(self) -> None:
        self._reports_sent = 0
        self._seq_by_report = collections.deque(maxlen=1024)
        self._last_seq = 0
        self._last_shown_seq = 0
        self._pressed = set()
        self._abs: tuple[int, int] | None = None
        self._button = False
        self._pointer: int | None = None
        self._slots.reset()

    def _translate(self, event: InputEvent) -> list[list[QmpEvent]]:
        """QMP event batches for one input, skipping what would not change the guest's state."""
        if isinstance(event, TouchEvent):
            return self._translate_touch(event)
        if isinstance(event, KeyEvent):
            qcode = qcode_for_dom(event.code)
            if qcode is None:
                log.info("%s: no guest key for %r, dropped", self.guest_id, event.code)
                return []
            return self._translate_key(qcode, event.action, event.shift)
        if isinstance(event, TextEvent):
            strokes, unmapped = strokes_for_text(event.text)
            if unmapped:
                log.info("%s: cannot type %r on a US keyboard, dropped", self.guest_id, unmapped)
            reports: list[list[QmpEvent]] = []
            for qcode, shift in strokes:
                reports += self._translate_key(qcode, "press", shift)
            return reports
        if isinstance(event, NavEvent):
            return self._translate_key(NAV_TO_QCODE[event.key], "press", False)
        raise TypeError(f"not an input event: {event!r}")

    def _translate_key(self, qcode: str, action: str, shift: bool) -> list[list[QmpEvent]]:
        """One report per key action; a key already in the wanted state sends nothing."""
        pressed = self._pressed
        if action == "down":
            if qcode in pressed:
                return []
            pressed.add(qcode)
            return [[_key(qcode, True)]]
        if action == "up":
            if qcode not in pressed:
                return []
            pressed.discard(qcode)
            return [[_key(qcode, False)]]
        events = [] if qcode in pressed else [_key(qcode, True)]
        events.append(_key(qcode, False))
        pressed.discard(qcode)
        if shift and not pressed & {"shift", "shift_r"} and qcode not in ("shift", "shift_r"):
            events = [_key("shift", True), *events, _key("shift", False)]
        return [events]

    def _translate_touch(self, event: TouchEvent) -> list[list[QmpEvent]]:
        if self.config.multitouch:
            batch = self._slots.translate(event)
            return [batch] if batch else []
        if self._pointer is None and event.action == "down":
            self._pointer = event.pointer_id
        if event.pointer_id != self._pointer:
            return []  # single touch: other fingers are ignored
        x = round(min(1.0, max(0.0, event.x)) * ABS_MAX)
        y = round(min(1.0, max(0.0, event.y)) * ABS_MAX)
        events: list[QmpEvent] = []
        if self._abs is None or self._abs[0] != x:
            events.append({"type": "abs", "data": {"axis": "x", "value": x}})
        if self._abs is None or self._abs[1] != y:
            events.append({"type": "abs", "data": {"axis": "y", "value": y}})
        self._abs = (x, y)
        down = event.action in ("down", "move")
        if down != self._button:
            events.append({"type": "btn", "data": {"down": down, "button": "left"}})
            self._button = down
        if event.action in ("up", "cancel"):
            self._pointer = None
        return [events] if events else []


def qemu_guest_factory(guest_id: str, spec: Any) -> QemuGuest:
    """`InstancePool` factory: `spec.options` may hold kernel, initrd, disk, append, arch,
    memory (MiB), cpus, accel (tcg, kvm, auto), capture (dbus, vnc), keepalive, binary,
    multitouch (true, false; absent: probe the binary), boot_timeout, ready_on_stamp; without
    kernel/disk the recipe image of `arch` (x86_64 or aarch64) is used."""
    from cloudphone.vm.qemu.image import ARCHES, KERNEL_CMDLINE, ensure_image

    options = dict(spec.options)
    recipe = options.get("kernel") is None and options.get("disk") is None
    kernel = options.get("kernel")
    disk = options.get("disk")
    initrd = options.get("initrd")
    append = options.get("append")
    arch = str(options.get("arch", "x86_64"))
    if kernel is None and disk is None:
        try:
            image = ensure_image(arch=arch)
        except Exception as exc:
            raise GuestError(f"no qemu image configured and the recipe failed: {exc}") from exc
        kernel, initrd = image.kernel, image.initrd
        append = append if append is not None else image.cmdline
    elif append is None and arch in ARCHES:  # the serial console differs per machine
        append = ARCHES[arch].cmdline
    config = QemuConfig(
        kernel=Path(kernel) if kernel else None,
        initrd=Path(initrd) if initrd else None,
        disk=Path(disk) if disk else None,
        append=str(append if append is not None else KERNEL_CMDLINE),
        arch=arch,
        memory_mb=int(options.get("memory", 256)),
        cpus=int(options.get("cpus", 1)),
        width=int(spec.width),
        height=int(spec.height),
        accel=str(options.get("accel", "tcg")),
        capture=str(options.get("capture", "vnc")),
        binary=options.get("binary") or None,
        multitouch=_optional_bool(options.get("multitouch"), "multitouch"),
    )
    return QemuGuest(
        guest_id,
        config,
        keepalive=options.get("keepalive", 0.02),
        ready_on_stamp=bool(options.get("ready_on_stamp", recipe)),
        boot_timeout=float(options.get("boot_timeout", 90.0)),
    )


_YES = ("true", "yes", "on", "1")
_NO = ("false", "no", "off", "0")


def _optional_bool(value: Any, name: str) -> bool | None:
    """A TOML/environment flag, or None when absent or "auto"."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _YES + _NO:
        return value.lower() in _YES
    raise GuestError(f"qemu option {name} must be true, false or auto, not {value!r}")
