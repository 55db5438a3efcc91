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
from cloudphone.vm.qemu.guest import qemu_guest_factory
from cloudphone.vm.qemu.image import _cpio_entry, write_initramfs
from cloudphone.vm.qemu.keymap import CHAR_TO_QCODE, qcode_for_dom, strokes_for_text
from cloudphone.vm.qemu.multitouch import MAX_SLOTS, SlotMapper
from cloudphone.vm.qemu.process import QemuProcess, private_paths, probe_multitouch

from tests.qemu_support import (
    BACKPORTS_QEMU,
    pid_alive,
    recipe_config,
    recipe_image,
    requires_multitouch_qemu,
    requires_qemu,
)


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


def _mtt(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """(type, slot, tracking-id, axis, value) of mtt events; ("btn", down) of the touch button."""
    out: list[tuple[object, ...]] = []
    for e in events:
        d = e["data"]
        assert isinstance(d, dict)
        if e["type"] == "mtt":
            out.append((d["type"], d["slot"], d["tracking-id"], d["axis"], d["value"]))
        else:
            assert e["type"] == "btn" and d["button"] == "touch"
            out.append(("btn", d["down"]))
    return out


def test_fingers_map_to_slots_as_qemu_mtt_events() -> None:
    slots = SlotMapper()
    assert _mtt(slots.translate(TouchEvent("down", 7, 0.5, 1.0))) == [
        ("begin", 0, 0, "x", 0),
        ("data", 0, 0, "x", 0x4000),
        ("data", 0, 0, "y", 0x7FFF),
        ("btn", True),  # BTN_TOUCH with the first finger
    ]
    assert _mtt(slots.translate(TouchEvent("down", 3, 0.0, 0.0))) == [
        ("begin", 1, 1, "x", 0),  # next free slot, next tracking id; (0, 0) is already held
    ]
    assert slots.translate(TouchEvent("move", 7, 0.5, 1.0)) == []  # no change: no report
    assert _mtt(slots.translate(TouchEvent("move", 7, 0.25, 1.0))) == [
        ("update", 0, 0, "x", 0),  # selects the slot
        ("data", 0, 0, "x", 0x2000),
    ]
    assert _mtt(slots.translate(TouchEvent("up", 7, 0.25, 1.0))) == [
        ("update", 0, 0, "x", 0),
        ("end", 0, -1, "x", 0),  # tracking id -1: the contact is gone
    ]
    assert slots.active == {3: 1}
    # slot 0 is free again and is reused; tracking ids keep counting
    assert _mtt(slots.translate(TouchEvent("down", 9, 0.25, 1.0)))[0] == ("begin", 0, 2, "x", 0)
    assert _mtt(slots.translate(TouchEvent("cancel", 3, 0.0, 0.0))) == [
        ("update", 1, 1, "x", 0),
        ("cancel", 1, -1, "x", 0),
    ]
    assert _mtt(slots.translate(TouchEvent("up", 9, 0.25, 1.0)))[-1] == ("btn", False)
    assert slots.active == {}


def test_bad_touch_input_is_dropped_and_the_rest_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    slots = SlotMapper("mt-unit")
    for finger in range(MAX_SLOTS):
        assert slots.translate(TouchEvent("down", finger, finger / 10, 0.5))
    with caplog.at_level(logging.WARNING, logger="cloudphone.vm.qemu.multitouch"):
        assert slots.translate(TouchEvent("down", 99, 0.5, 0.5)) == []  # an 11th finger
    assert "one more than the 10" in caplog.text
    assert slots.translate(TouchEvent("move", 99, 0.6, 0.6)) == []  # it never got a slot
    assert slots.translate(TouchEvent("up", 42, 0.6, 0.6)) == []  # never went down
    # out-of-range coordinates are clamped to the screen's edge
    (_, x, y) = slots.translate(TouchEvent("move", 5, -3.0, 7.5))
    assert (x["data"]["value"], y["data"]["value"]) == (0, 0x7FFF)
    assert len(slots.active) == MAX_SLOTS
    slots.translate(TouchEvent("up", 4, 0.4, 0.5))
    assert slots.translate(TouchEvent("down", 99, 0.5, 0.5))[0]["data"]["slot"] == 4
    slots.reset()  # a restarted guest holds no contact
    assert slots.active == {}
    assert slots.translate(TouchEvent("move", 0, 0.1, 0.1)) == []


def test_multitouch_guest_reports_ten_pointers_and_uses_the_device() -> None:
    config = QemuConfig(kernel=Path("/nonexistent"), multitouch=True)
    guest = QemuGuest("unit-mt", config)
    assert guest.capabilities.multitouch is True
    assert guest.capabilities.max_pointers == MAX_SLOTS
    assert guest.capabilities.as_dict()["maxPointers"] == 10
    (down,) = guest._translate(TouchEvent("down", 0, 0.5, 0.5))
    assert down[0]["type"] == "mtt"
    assert guest._translate(TouchEvent("down", 1, 0.2, 0.2))  # a second finger counts here
    guest._reset_input_state()  # what a restart does
    assert guest._slots.active == {}


def test_qemu_options_choose_binary_and_touch_device() -> None:
    spec = GuestSpec(
        kind="qemu",
        options={"kernel": "/k", "binary": "/opt/qemu/bin/qemu-system-x86_64", "multitouch": "no"},
    )
    guest = qemu_guest_factory("opts", spec)
    assert guest.config.binary == "/opt/qemu/bin/qemu-system-x86_64"
    assert guest.config.multitouch is False
    auto = qemu_guest_factory("auto", GuestSpec(kind="qemu", options={"kernel": "/k"}))
    assert auto.config.multitouch is None and auto.config.binary is None
    with pytest.raises(GuestError, match="multitouch must be true, false or auto"):
        qemu_guest_factory("bad", GuestSpec(kind="qemu", options={"kernel": "/k", "multitouch": 2}))


def test_edge_qemu_binary_reaches_qemu_phones_only() -> None:
    from cloudphone.edge.app import instance_specs
    from cloudphone.edge.config import load_config

    config = load_config(environ={}, overrides={"guest": "qemu", "qemu_binary": "/q/bin/qemu"})
    ((_, spec),) = instance_specs(config)
    assert spec.options["binary"] == "/q/bin/qemu"
    config = load_config(
        environ={},
        overrides={
            "qemu_binary": "/q/bin/qemu",
            "instances": [{"kind": "qemu", "binary": "/own"}, {"kind": "qemu"}, {}],
        },
    )
    specs = [spec for _, spec in instance_specs(config)]
    assert [s.options.get("binary") for s in specs] == ["/own", "/q/bin/qemu", None]


def test_unpacked_qemu_is_pointed_at_its_own_files(tmp_path: Path) -> None:
    assert private_paths("/usr/bin/qemu-system-x86_64") == ([], {})
    for folder in (
        "usr/bin",
        "usr/share/qemu",
        "usr/share/seabios",
        "usr/lib/x86_64-linux-gnu/qemu",
    ):
        (tmp_path / folder).mkdir(parents=True)
    args, env = private_paths(str(tmp_path / "usr/bin/qemu-system-x86_64"))
    assert args == ["-L", f"{tmp_path}/usr/share/qemu", "-L", f"{tmp_path}/usr/share/seabios"]
    assert env == {"QEMU_MODULE_DIR": f"{tmp_path}/usr/lib/x86_64-linux-gnu/qemu"}


@requires_qemu
@pytest.mark.qemu
async def test_debian_12_qemu_probes_as_single_touch() -> None:
    if await probe_multitouch(QemuConfig()):
        pytest.skip("!! the system QEMU has virtio-multitouch-pci: not Debian 12's 7.2")
    guest = QemuGuest("st", QemuConfig(kernel=Path("/nonexistent")))
    assert guest.capabilities.multitouch is False
    with pytest.raises(GuestError, match="does not exist"):  # probed, then the image check
        await guest.start()
    assert guest.config.multitouch is False


@requires_multitouch_qemu
@pytest.mark.qemu
async def test_backports_qemu_probes_as_multi_touch() -> None:
    assert await probe_multitouch(QemuConfig(binary=str(BACKPORTS_QEMU))) is True
    process = QemuProcess(
        QemuConfig(kernel=Path("/k"), binary=str(BACKPORTS_QEMU), multitouch=True)
    )
    with pytest.raises(GuestError, match="does not exist"):
        process.argv()
    assert QemuProcess(
        QemuConfig(binary=str(BACKPORTS_QEMU), multitouch=True, disk=Path(__file__))
    ).argv()[1:3] == ["-L", str(BACKPORTS_QEMU.parents[1] / "share/qemu")]


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
