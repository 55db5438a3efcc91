"""QEMU guest parts that need no boot: key maps, input translation, the cpio writer, errors,
and the D-Bus display attach under uvloop."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
import uvloop
from cloudphone.vm.guest import GuestError, GuestState, KeyEvent, NavEvent, TextEvent, TouchEvent
from cloudphone.vm.pool import GuestSpec, InstancePool
from cloudphone.vm.qemu import QemuConfig, QemuGuest, register
from cloudphone.vm.qemu.dbus_display import DbusDisplay
from cloudphone.vm.qemu.image import _cpio_entry, write_initramfs
from cloudphone.vm.qemu.keymap import CHAR_TO_QCODE, qcode_for_dom, strokes_for_text
from cloudphone.vm.qemu.process import QemuProcess

from tests.qemu_support import pid_alive, recipe_config, recipe_image, requires_qemu


def test_dom_codes_map_to_qcodes() -> None:
    assert qcode_for_dom("KeyA") == "a"
    assert qcode_for_dom("Digit7") == "7"
    assert qcode_for_dom("Enter") == "ret"
    assert qcode_for_dom("ShiftLeft") == "shift"
    assert qcode_for_dom("Quote") == "apostrophe"
    assert qcode_for_dom("NoSuchKey") is None


def test_text_becomes_shifted_strokes() -> None:
    strokes, unmapped = strokes_for_text('Hi! a_"é')
    assert strokes == [
        ("h", True),
        ("i", False),
        ("1", True),
        ("spc", False),
        ("a", False),
        ("minus", True),
        ("apostrophe", True),
    ]
    assert unmapped == "é"
    # every printable ASCII character can be typed
    assert all(chr(c) in CHAR_TO_QCODE for c in range(0x20, 0x7F))


def _guest() -> QemuGuest:
    return QemuGuest("unit", QemuConfig(kernel=Path("/nonexistent")))


def test_key_translation_skips_no_op_events() -> None:
    guest = _guest()
    assert len(guest._translate(KeyEvent("down", "KeyA"))) == 1
    assert guest._translate(KeyEvent("down", "KeyA")) == []  # already down: the kernel drops it
    assert len(guest._translate(KeyEvent("up", "KeyA"))) == 1
    assert guest._translate(KeyEvent("up", "KeyA")) == []
    (press,) = guest._translate(KeyEvent("press", "KeyB", shift=True))
    assert [e["data"]["key"]["data"] for e in press] == ["shift", "b", "b", "shift"]
    assert len(guest._translate(TextEvent("ab"))) == 2  # one report per character
    (nav,) = guest._translate(NavEvent("back"))
    assert nav[0]["data"]["key"]["data"] == "ac_back"


def test_touch_translation_is_single_pointer_and_skips_repeats() -> None:
    guest = _guest()
    (down,) = guest._translate(TouchEvent("down", 0, 0.5, 1.0))
    assert [e["type"] for e in down] == ["abs", "abs", "btn"]
    assert down[1]["data"]["value"] == 0x7FFF
    assert guest._translate(TouchEvent("down", 1, 0.1, 0.1)) == []  # a second finger
    assert guest._translate(TouchEvent("move", 0, 0.5, 1.0)) == []  # same place: no report
    (move,) = guest._translate(TouchEvent("move", 0, 0.25, 1.0))
    assert [e["type"] for e in move] == ["abs"]
    (up,) = guest._translate(TouchEvent("up", 0, 0.25, 1.0))
    assert [e["type"] for e in up] == ["btn"]
    assert guest.capabilities.multitouch is False
    assert guest.capabilities.max_pointers == 1


async def test_input_to_a_stopped_guest_is_dropped_with_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    guest = _guest()
    with caplog.at_level(logging.INFO, logger="cloudphone.vm.qemu.guest"):
        await guest.send_input(KeyEvent("press", "KeyA", seq=3))
    assert "dropping input" in caplog.text


async def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"x")
    guest = QemuGuest("nobin", QemuConfig(kernel=kernel, binary="qemu-system-nonexistent"))
    with pytest.raises(GuestError, match="not found"):
        await guest.start()
    assert guest.state == GuestState.FAILED


async def test_missing_image_is_a_clear_error_through_the_pool(tmp_path: Path) -> None:
    pool = InstancePool()
    register(pool)
    spec = GuestSpec(kind="qemu", options={"kernel": str(tmp_path / "missing-vmlinuz")})
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("!! qemu-system-x86_64 not installed: the image check comes after it")
    with pytest.raises(GuestError, match="does not exist"):
        await pool.create("q1", spec)
    assert "q1" not in pool


def test_initramfs_writer_makes_a_valid_newc_archive(tmp_path: Path) -> None:
    out = tmp_path / "test.cpio"
    write_initramfs(out, {"init": (0o755, b"#!/bin/sh\n"), "bin/x": (0o644, b"abc")}, ["bin"])
    assert len(_cpio_entry("a", 0o100644, b"xyz")) % 4 == 0
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("!! busybox not installed: cannot list the archive")
    listing = subprocess.run(
        [busybox, "cpio", "-t"], input=out.read_bytes(), capture_output=True, check=True
    ).stdout.decode()
    assert listing.split() == ["bin", "init", "bin/x"]


@requires_qemu
@pytest.mark.qemu
def test_dbus_display_attaches_under_uvloop() -> None:
    """`cloudphone serve` runs on uvloop, whose transports differ (fd passing over QMP). The
    D-Bus display attaches before the guest boots, so this needs QEMU but no boot: ~1 s."""

    async def attach() -> tuple[int, int]:
        image = recipe_image()
        process = QemuProcess(recipe_config(image, capture="dbus"))
        await process.start()
        sizes: list[tuple[int, int]] = []
        display = DbusDisplay(process.qmp, lambda fb, t, d: None, lambda w, h: sizes.append((w, h)))
        try:
            await display.connect()
            run = asyncio.ensure_future(display.run())
            for _ in range(200):  # the firmware's first scanout
                if sizes:
                    break
                await asyncio.sleep(0.01)
            run.cancel()
        finally:
            await display.close()
            await process.stop()
        assert sizes, "no Scanout from QEMU's D-Bus display"
        return sizes[0]

    width, height = uvloop.run(attach())
    assert width > 0 and height > 0


@requires_qemu
@pytest.mark.qemu
async def test_stop_while_booting_ends_qemu_and_reports_stopped() -> None:
    guest = QemuGuest("early-stop", recipe_config(recipe_image()))
    starting = asyncio.ensure_future(guest.start())
    for _ in range(500):
        if guest.process is not None and guest.process.pid is not None:
            break
        await asyncio.sleep(0.01)
    assert guest.process is not None and guest.process.pid is not None
    pid = guest.process.pid
    await guest.stop()  # the edge shutting down while a guest boots
    with pytest.raises(GuestError):
        await starting
    assert guest.state == GuestState.STOPPED
    assert not pid_alive(pid)
