"""A real QEMU guest (the recipe image) on the D-Bus display capture path, booted once for the
module: frames, input, resize and a clean stop (~15 s under TCG). The default VNC path and
crash restarts are covered end to end through the edge in test_qemu_edge.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from cloudphone.vm.guest import (
    GuestState,
    KeyEvent,
    NavEvent,
    RawFrame,
    ScreenGeometry,
    TextEvent,
    TouchEvent,
)
from cloudphone.vm.qemu import QemuGuest, RestartPolicy
from cloudphone.vm.stamp import read_stamp

from tests.qemu_support import FrameCollector, pid_alive, recipe_config, recipe_image, requires_qemu

pytestmark = [requires_qemu, pytest.mark.qemu, pytest.mark.asyncio(loop_scope="module")]


class Booted:
    def __init__(self, guest: QemuGuest, sink: FrameCollector) -> None:
        self.guest = guest
        self.sink = sink
        self.states: list[GuestState] = []
        self.screens: list[ScreenGeometry] = []
        self.seq = 0
        guest.events.on("state", self.states.append)
        guest.events.on("screen", self.screens.append)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    async def apply(self, event_factory: object, what: str) -> RawFrame:
        """Send an input with a fresh seq; return the first frame whose stamp carries it."""
        seq = self.next_seq()
        assert callable(event_factory)
        await self.guest.send_input(event_factory(seq))
        return await self.sink.wait_for(lambda f: f.input_seq == seq, 5.0, what)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def booted() -> AsyncIterator[Booted]:
    image = recipe_image()
    config = recipe_config(image, capture="dbus")
    guest = QemuGuest("test-qemu", config, restart=RestartPolicy(backoff_s=0.0))
    sink = FrameCollector()
    guest.attach(sink)
    b = Booted(guest, sink)
    await guest.start()
    try:
        yield b
    finally:
        await guest.stop()


async def test_boots_to_a_stamped_phone_screen(booted: Booted) -> None:
    guest, frame = booted.guest, booted.sink.last
    assert guest.state == GuestState.RUNNING
    assert booted.states == [GuestState.STARTING, GuestState.RUNNING]
    assert guest.boot_to_first_frame is not None and guest.boot_to_first_frame < 90
    assert (frame.width, frame.height) == (720, 1280)
    assert frame.pixel_format == "bgra"
    assert read_stamp(frame.data) is not None
    assert guest.screen == ScreenGeometry(720, 1280)
    run_dir = guest.process.run_dir if guest.process else None
    assert run_dir is not None and (run_dir / "qmp.sock").exists()
    assert guest.config.capture == "dbus"


async def test_keys_and_text_change_the_picture(booted: Booted) -> None:
    before = booted.sink.last.data.copy()
    frame = await booted.apply(lambda s: TextEvent("Hi!", seq=s), "frame with typed text")
    stamp = read_stamp(frame.data)
    assert stamp is not None and stamp.input_seq == booted.seq  # the edge's seq, not the count
    # the typed-text panel (below the strip and status line) changed
    panel = slice(60, 180)
    assert np.any(frame.data[panel] != before[panel])
    frame2 = await booted.apply(lambda s: KeyEvent("press", "KeyQ", seq=s), "frame with a key")
    assert np.any(frame2.data[panel] != frame.data[panel])


async def test_tap_draws_where_it_landed(booted: Booted) -> None:
    x, y = 0.25, 0.75
    await booted.apply(lambda s: TouchEvent("down", 0, x, y, seq=s), "touch down")
    seq = booted.next_seq()
    await booted.guest.send_input(TouchEvent("up", 0, x, y, seq=seq))

    def green_dot(f: RawFrame) -> bool:  # (B,G,R,X): green where the tap ended
        px = f.data[int(y * f.height), int(x * f.width)]
        return f.input_seq == seq and px[1] > 200 and px[2] < 100

    # the dot may land one display refresh after the stamp (VGA dirty tracking): wait for it
    frame = await booted.sink.wait_for(green_dot, 5.0, "green dot where the tap ended")
    far = frame.data[int(0.9 * frame.height), int(0.9 * frame.width)]
    assert far[1] < 100


async def test_nav_and_repeated_input_keep_stamps_in_step(booted: Booted) -> None:
    await booted.apply(lambda s: NavEvent("home", seq=s), "home")
    await booted.apply(lambda s: KeyEvent("down", "ShiftLeft", seq=s), "shift down")
    # a no-op (shift already down) sends nothing; the next real input still maps right
    await booted.guest.send_input(KeyEvent("down", "ShiftLeft", seq=booted.next_seq()))
    await booted.apply(lambda s: KeyEvent("press", "KeyZ", seq=s), "Z")
    await booted.apply(lambda s: KeyEvent("up", "ShiftLeft", seq=s), "shift up")


async def test_resolution_change_reaches_frames_and_events(booted: Booted) -> None:
    frame = await booted.apply(lambda s: KeyEvent("press", "F11", seq=s), "landscape frame")
    assert (frame.width, frame.height) == (1280, 720)
    assert booted.guest.screen == ScreenGeometry(1280, 720)
    assert booted.screens[-1] == ScreenGeometry(1280, 720)
    frame = await booted.apply(lambda s: KeyEvent("press", "F11", seq=s), "portrait frame")
    assert (frame.width, frame.height) == (720, 1280)
    assert booted.screens[-1] == ScreenGeometry(720, 1280)


async def test_stop_leaves_nothing_behind(booted: Booted) -> None:
    guest = booted.guest
    assert guest.process is not None
    pid = guest.process.pid
    run_dir: Path = guest.process.run_dir
    assert pid is not None
    await guest.stop()
    assert guest.state == GuestState.STOPPED
    assert not pid_alive(pid)
    assert not await asyncio.to_thread(run_dir.exists)
    await guest.send_input(KeyEvent("press", "KeyA", seq=booted.next_seq()))  # dropped, no error
