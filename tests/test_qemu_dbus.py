"""The D-Bus display capture path (`-display dbus,p2p=yes`) on a real QEMU guest: first frame,
input shows, resolution change. One boot (~10 s under TCG)."""

from __future__ import annotations

import numpy as np
import pytest
from cloudphone.vm.guest import GuestState, KeyEvent, ScreenGeometry, TouchEvent
from cloudphone.vm.qemu import QemuGuest
from cloudphone.vm.stamp import read_stamp
from qemu_support import FrameCollector, recipe_config, recipe_image, requires_qemu

pytestmark = [requires_qemu, pytest.mark.qemu]


async def test_dbus_display_streams_input_and_resizes() -> None:
    guest = QemuGuest("test-dbus", recipe_config(recipe_image(), capture="dbus"))
    sink = FrameCollector()
    guest.attach(sink)
    screens: list[ScreenGeometry] = []
    guest.events.on("screen", screens.append)
    await guest.start()
    try:
        assert guest.state == GuestState.RUNNING
        first = sink.last
        assert (first.width, first.height) == (720, 1280)
        assert read_stamp(first.data) is not None

        await guest.send_input(KeyEvent("press", "KeyD", shift=True, seq=1))
        frame = await sink.wait_for(lambda f: f.input_seq == 1, 5.0, "frame after a key")
        assert np.any(frame.data[60:180] != first.data[60:180])

        await guest.send_input(TouchEvent("down", 0, 0.5, 0.8, seq=2))
        await guest.send_input(TouchEvent("up", 0, 0.5, 0.8, seq=3))
        frame = await sink.wait_for(lambda f: f.input_seq == 3, 5.0, "frame after a tap")
        assert frame.data[int(0.8 * 1280), 360][1] > 200  # green dot where the tap ended

        await guest.send_input(KeyEvent("press", "F11", seq=4))
        frame = await sink.wait_for(lambda f: f.input_seq == 4, 5.0, "landscape frame")
        assert (frame.width, frame.height) == (1280, 720)
        assert screens[-1] == ScreenGeometry(1280, 720)
    finally:
        await guest.stop()
    assert guest.state == GuestState.STOPPED
