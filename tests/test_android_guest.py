"""AndroidGuest against the fake adb server + fake scrcpy-server: video, input, failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import av
import pytest
from cloudphone.vm.android import annexb
from cloudphone.vm.android.guest import AndroidGuest
from cloudphone.vm.android.options import AndroidOptions
from cloudphone.vm.android.scrcpy_protocol import HEADER_SIZE
from cloudphone.vm.guest import (
    EncodedChunk,
    GuestError,
    GuestEventName,
    GuestState,
    KeyEvent,
    NavEvent,
    RawFrame,
    ScreenGeometry,
    TextEvent,
    TouchEvent,
)

from tests.fakes.adb_server import FakeAdbServer
from tests.fakes.scrcpy_device import FakeScrcpyDevice, add_phone


class Sink:
    def __init__(self) -> None:
        self.chunks: list[EncodedChunk] = []
        self.event = asyncio.Event()

    def push_frame(self, frame: RawFrame) -> None:  # pragma: no cover - android never sends raw
        raise AssertionError("android guests push encoded chunks only")

    def push_encoded(self, chunk: EncodedChunk) -> None:
        self.chunks.append(chunk)
        self.event.set()

    async def wait(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            self.event.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("condition not met")
            try:
                await asyncio.wait_for(self.event.wait(), min(remaining, 0.1))
            except TimeoutError:
                pass


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


@pytest.fixture
async def adb() -> AsyncIterator[FakeAdbServer]:
    server = await FakeAdbServer().start()
    yield server
    await server.close()


async def _started(
    adb: FakeAdbServer, tmp_path: Path, serial: str = "phone-1", **kw: Any
) -> tuple[AndroidGuest, FakeScrcpyDevice, Sink]:
    extra = {k: kw.pop(k) for k in list(kw) if k in ("tunnel", "keyframe_min_interval_s")}
    phone, options = add_phone(adb, tmp_path, serial, **kw)
    guest = AndroidGuest("g-" + serial, AndroidOptions.from_mapping({**options, **extra}))
    sink = Sink()
    guest.attach(sink)
    await guest.start()
    return guest, phone, sink


def _decode_sizes(chunks: list[EncodedChunk]) -> list[tuple[int, int]]:
    decoder = av.CodecContext.create("h264", "r")
    sizes = []
    for chunk in chunks:
        sizes += [(f.width, f.height) for f in decoder.decode(av.Packet(chunk.data))]
    sizes += [(f.width, f.height) for f in decoder.decode(None)]
    return sizes


@pytest.mark.parametrize(("version", "tunnel"), [("3.3.4", "forward"), ("4.1", "reverse")])
async def test_streams_passthrough_h264(
    adb: FakeAdbServer, tmp_path: Path, version: str, tunnel: str
) -> None:
    guest, phone, sink = await _started(adb, tmp_path, version=version, tunnel=tunnel)
    try:
        assert guest.state == GuestState.RUNNING
        assert guest.capabilities.encoded_output == "h264"
        assert guest.device_name == "Fake Pixel"
        await sink.wait(lambda: len(sink.chunks) >= 6)
        assert guest.screen == ScreenGeometry(320, 640, 0)
        first = sink.chunks[0]
        assert (
            first.keyframe and first.codec == "h264" and (first.width, first.height) == (320, 640)
        )
        assert annexb.nal_types(first.data)[:2] == [annexb.NAL_SPS, annexb.NAL_PPS]
        assert _decode_sizes(sink.chunks[:6]) == [(320, 640)] * 6
        # The server was started the documented way, with browser-friendly options.
        assert (
            phone.device.files["/data/local/tmp/scrcpy-server.jar"]
            == (tmp_path / f"scrcpy-server-{version}").read_bytes()
        )
        assert phone.options["video_codec"] == "h264"
        assert phone.options["video_codec_options"] == "profile:int=1"
        assert phone.options.get("tunnel_forward", "false") == (
            "true" if tunnel == "forward" else "false"
        )
    finally:
        await guest.stop()
    assert guest.state == GuestState.STOPPED
    assert not phone.device.reverses


async def test_rotation_touch_keys_text_clipboard(adb: FakeAdbServer, tmp_path: Path) -> None:
    guest, phone, sink = await _started(adb, tmp_path)
    screens: list[ScreenGeometry] = []
    clipboard: list[str] = []
    guest.events.on(GuestEventName.SCREEN, screens.append)
    guest.events.on(GuestEventName.CLIPBOARD, clipboard.append)
    try:
        await sink.wait(lambda: len(sink.chunks) >= 2)
        await guest.rotate()  # ROTATE_DEVICE; the fake turns and starts a new capture session
        await until(lambda: guest.screen.width == 640)
        assert screens[-1] == ScreenGeometry(640, 320, 90)
        n = len(sink.chunks)
        await sink.wait(lambda: any(c.keyframe and c.width == 640 for c in sink.chunks[n - 1 :]))
        key = next(c for c in sink.chunks[n - 1 :] if c.keyframe and c.width == 640)
        assert annexb.find_sps_size(key.data) == (640, 320)

        # Two fingers after the rotation: two pointer ids, device coordinates in 640x320.
        for event in (
            TouchEvent("down", 0, 0.25, 0.5),
            TouchEvent("down", 1, 0.75, 0.5, pressure=0.5),
            TouchEvent("move", 0, 0.3, 0.5),
            TouchEvent("up", 1, 0.75, 0.5),
            TouchEvent("up", 0, 0.3, 0.5),
        ):
            await guest.send_input(event)
        await phone.wait_for(lambda: len(phone.received.touches) == 5)
        t = phone.received.touches
        assert [(x.action, x.pointer_id, x.x, x.y) for x in t] == [
            (0, 0, 160, 160), (0, 1, 480, 160), (2, 0, 192, 160),
            (1, 1, 480, 160), (1, 0, 192, 160),
        ]  # fmt: skip
        assert all((x.width, x.height) == (640, 320) for x in t)
        assert t[1].pressure == pytest.approx(0.5, abs=1e-3) and t[3].pressure == 0.0
        assert not phone.received.dropped_touches

        await guest.send_input(KeyEvent("press", "KeyA", shift=True))
        await guest.send_input(NavEvent("back"))
        await guest.send_input(NavEvent("home"))
        await guest.send_input(NavEvent("recents"))
        await guest.send_input(TextEvent("x" * 350))
        await guest.send_input(KeyEvent("press", "NoSuchKey"))
        await phone.wait_for(
            lambda: len(phone.received.keys) == 8 and len(phone.received.texts) == 2
        )
        assert phone.received.keys == [
            (0, 29, 0x41), (1, 29, 0x41), (0, 4, 0), (1, 4, 0),
            (0, 3, 0), (1, 3, 0), (0, 187, 0), (1, 187, 0),
        ]  # fmt: skip
        assert "".join(phone.received.texts) == "x" * 350

        assert await guest.set_clipboard("from the browser")
        assert phone.clipboard == "from the browser"
        assert phone.received.clipboard_sets[-1][0] != 0  # a sequence, so the device acks
        await phone.set_device_clipboard("from the phone")
        await until(lambda: clipboard == ["from the phone"])
    finally:
        await guest.stop()


async def test_keyframe_request_sends_reset_video(adb: FakeAdbServer, tmp_path: Path) -> None:
    guest, phone, sink = await _started(adb, tmp_path, keyframe_min_interval_s=1.0)
    try:
        await sink.wait(lambda: len(sink.chunks) >= 3)
        n = len(sink.chunks)
        guest.request_keyframe()
        guest.request_keyframe()  # a PLI burst: one RESET_VIDEO, the encoder restarts once
        await phone.wait_for(lambda: phone.received.resets >= 1)
        await sink.wait(lambda: any(c.keyframe for c in sink.chunks[n:]))
        assert phone.received.resets == 1
        # The keyframe went out; a viewer joining now needs another one. It is not dropped,
        # only held until the rate limit (here one encoder restart per second) allows it.
        guest.request_keyframe()
        guest.request_keyframe()
        await asyncio.sleep(0.3)
        assert phone.received.resets == 1
        await phone.wait_for(lambda: phone.received.resets == 2)
        await asyncio.sleep(0.3)
        assert phone.received.resets == 2
        assert phone.sessions_sent == 3
    finally:
        await guest.stop()


async def test_server_dying_restarts_with_backoff(adb: FakeAdbServer, tmp_path: Path) -> None:
    guest, phone, sink = await _started(adb, tmp_path)
    states: list[GuestState] = []
    guest.events.on(GuestEventName.STATE, states.append)
    try:
        await sink.wait(lambda: len(sink.chunks) >= 2)
        adb.devices["phone-1"].state = "offline"  # first reconnects fail: the device is gone
        phone.die()
        await until(lambda: GuestState.RESTARTING in states)
        await asyncio.sleep(0.5)
        failed_attempts = sum(1 for r in adb.requests if r == "host:transport:phone-1")
        adb.devices["phone-1"].state = "device"
        await until(lambda: guest.state == GuestState.RUNNING, within=10)
        n = len(sink.chunks)
        await sink.wait(lambda: len(sink.chunks) >= n + 3)
        assert states[:2] == [GuestState.RESTARTING, GuestState.RUNNING]
        assert phone.starts == 2 and guest.reconnects == 1
        assert failed_attempts >= 2  # it kept trying, with growing waits (0.1, 0.2, 0.4 ...)
        assert guest.last_error
    finally:
        await guest.stop()


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"\x00\x00\x00\x00\x00", "truncated packet header"),
        (
            (1 << 62).to_bytes(8, "big") + (0x7FFFFFF0).to_bytes(4, "big"),
            "absurd media packet size",
        ),
    ],
)
async def test_bad_device_output_closes_only_that_guest(
    adb: FakeAdbServer, tmp_path: Path, garbage: bytes, reason: str
) -> None:
    bad, bad_phone, bad_sink = await _started(adb, tmp_path, "bad-phone")
    good, _, good_sink = await _started(adb, tmp_path, "good-phone")
    try:
        await bad_sink.wait(lambda: len(bad_sink.chunks) >= 2)
        assert len(garbage) < HEADER_SIZE or len(garbage) == HEADER_SIZE
        bad_phone.break_video = garbage
        await until(lambda: bad.state == GuestState.FAILED)
        assert reason in (bad.last_error or "")
        n = len(good_sink.chunks)
        await good_sink.wait(lambda: len(good_sink.chunks) >= n + 5)
        assert good.state == GuestState.RUNNING
        assert bad_phone.starts == 1  # no retry loop against a device that talks garbage
    finally:
        await bad.stop()
        await good.stop()


async def test_unknown_codec_and_version_mismatch_fail_start(
    adb: FakeAdbServer, tmp_path: Path
) -> None:
    with pytest.raises(GuestError, match="unknown video codec id 0x12345678"):
        await _started(adb, tmp_path, "odd-codec", codec_id=0x12345678)
    phone, options = add_phone(adb, tmp_path, "old-phone", version="3.3.4")
    (tmp_path / "other.jar").write_bytes(b"FAKE-SCRCPY-SERVER 3.3.3")
    guest = AndroidGuest(
        "g",
        AndroidOptions.from_mapping(
            {**options, "server_version": "3.3.3", "server_jar": str(tmp_path / "other.jar")}
        ),
    )
    with pytest.raises(GuestError, match="does not match"):
        await guest.start()
    assert guest.state == GuestState.FAILED
    assert phone.starts == 0


def test_options_validation() -> None:
    with pytest.raises(ValueError, match="serial"):
        AndroidOptions.from_mapping({})
    with pytest.raises(ValueError, match="server_jar"):
        AndroidOptions.from_mapping({"serial": "x"})
    with pytest.raises(ValueError, match="unknown android options"):
        AndroidOptions.from_mapping({"serial": "x", "server_jar": "j", "bogus": 1})
    with pytest.raises(ValueError, match="too old"):
        AndroidOptions.from_mapping({"serial": "x", "server_jar": "j", "server_version": "2.7"})


async def test_video_configuration_error_on_the_device(adb: FakeAdbServer, tmp_path: Path) -> None:
    with pytest.raises(GuestError, match="video configuration error on the device"):
        await _started(adb, tmp_path, "no-encoder", codec_id=1)


async def test_garbage_after_a_reconnect_fails_without_retrying(
    adb: FakeAdbServer, tmp_path: Path
) -> None:
    guest, phone, sink = await _started(adb, tmp_path)
    states: list[GuestState] = []
    guest.events.on(GuestEventName.STATE, states.append)
    try:
        await sink.wait(lambda: len(sink.chunks) >= 2)
        phone.codec_id = 0x12345678  # the device comes back speaking nonsense
        phone.die()
        await until(lambda: guest.state == GuestState.FAILED)
        assert states == [GuestState.RESTARTING, GuestState.FAILED]
        assert "unknown video codec id 0x12345678" in (guest.last_error or "")
        await asyncio.sleep(0.5)
        assert phone.starts == 2  # one reconnect, then it gave up: no loop against a bad device
    finally:
        await guest.stop()
