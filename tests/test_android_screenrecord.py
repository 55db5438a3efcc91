"""The screenrecord fallback: access-unit cutting, restarts, rotation, input through a shell."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import av
import pytest
from cloudphone.codecs import EncoderConfig, create_encoder
from cloudphone.vm.android import annexb
from cloudphone.vm.android.options import AndroidOptions
from cloudphone.vm.android.screenrecord import (
    AccessUnitSplitter,
    ScreenrecordGuest,
    input_text_argument,
    recording_size,
)
from cloudphone.vm.guest import (
    EncodedChunk,
    GuestState,
    KeyEvent,
    NavEvent,
    RawFrame,
    ScreenGeometry,
    TextEvent,
    TouchEvent,
)

from tests.fakes.adb_server import FakeAdbServer, FakeDevice
from tests.fakes.scrcpy_device import make_picture
from tests.fakes.screenrecord_device import FakeScreenrecordDevice


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


def test_splitter_cuts_access_units_at_any_chunking() -> None:
    enc = create_encoder(EncoderConfig("h264", 160, 288, 30))
    units = []
    for i in range(6):
        frame = RawFrame(make_picture(160, 288, i), "yuv420p", 0.0)
        units += [p.data for p in enc.encode(frame, i, i == 0)]
    enc.close()
    stream = b"".join(units)
    for chunk in (1, 7, 4096, len(stream)):
        splitter = AccessUnitSplitter()
        out = []
        for off in range(0, len(stream), chunk):
            out += splitter.feed(stream[off : off + chunk])
        out += splitter.flush()
        assert [key for _, key in out] == [True] + [False] * 5
        assert [annexb.nal_types(a) for a, _ in out] == [annexb.nal_types(u) for u in units]


def test_helpers() -> None:
    assert recording_size(1080, 2400, 1280) == (576, 1280)
    assert recording_size(720, 1280, 0) == (720, 1280)
    assert input_text_argument("hello world 100%") == "'hello%sworld%s100\\%'"
    assert input_text_argument("héllo") is None


@pytest.fixture
async def rig() -> AsyncIterator[
    tuple[ScreenrecordGuest, FakeScreenrecordDevice, list[EncodedChunk]]
]:
    adb = await FakeAdbServer().start()
    fake = FakeScreenrecordDevice(adb.add_device(FakeDevice("legacy")))
    options = AndroidOptions.from_mapping(
        {
            "serial": "legacy",
            "adb": adb.address,
            "mode": "screenrecord",
            "screenrecord_time_limit_s": 1,
        }
    )
    guest = ScreenrecordGuest("old-phone", options)
    chunks: list[EncodedChunk] = []

    class Sink:
        def push_frame(self, frame: RawFrame) -> None:  # pragma: no cover
            raise AssertionError

        def push_encoded(self, chunk: EncodedChunk) -> None:
            chunks.append(chunk)

    guest.attach(Sink())
    await guest.start()
    yield guest, fake, chunks
    await guest.stop()
    await adb.close()


async def test_streams_restarts_and_rotates(
    rig: tuple[ScreenrecordGuest, FakeScreenrecordDevice, list[EncodedChunk]],
) -> None:
    guest, fake, chunks = rig
    assert guest.capabilities.max_pointers == 1 and guest.kind == "android-screenrecord"
    await until(lambda: len(chunks) >= 5)
    assert guest.screen == ScreenGeometry(320, 640, 0)
    assert chunks[0].keyframe and annexb.nal_types(chunks[0].data)[:2] == [7, 8]
    # --time-limit 1: the recording ends and is restarted at once, with a fresh keyframe.
    await until(lambda: len(fake.recordings) >= 2, within=5)
    await until(lambda: sum(c.keyframe for c in chunks) >= 2, within=5)
    assert guest.state == GuestState.RUNNING
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for c in chunks[:5] for f in decoder.decode(av.Packet(c.data))]
    assert frames and frames[0].width == 320

    fake.orientation = 1  # the user turned the phone
    await until(lambda: guest.screen.width == 640, within=5)
    assert guest.screen == ScreenGeometry(640, 320, 90)
    assert "--size 640x320" in fake.recordings[-1]


async def test_input_goes_through_one_shell(
    rig: tuple[ScreenrecordGuest, FakeScreenrecordDevice, list[EncodedChunk]],
) -> None:
    guest, fake, chunks = rig
    await until(lambda: len(chunks) >= 1)
    await guest.send_input(TouchEvent("down", 0, 0.5, 0.25))
    await guest.send_input(TouchEvent("down", 1, 0.1, 0.1))  # a second finger: not possible here
    await guest.send_input(TouchEvent("up", 0, 0.5, 0.25))
    await guest.send_input(NavEvent("home"))
    await guest.send_input(KeyEvent("press", "Enter"))
    await guest.send_input(TextEvent("hi there"))
    await until(lambda: len(fake.inputs) >= 5)
    assert fake.inputs == [
        "input motionevent DOWN 160 160",
        "input motionevent UP 160 160",
        "input keyevent 3",
        "input keyevent 66",
        "input text hi%sthere",
    ]
    # Turned but not yet re-recorded: the touch is turned into the rotated UI's frame.
    guest.orientation = 1
    await guest.send_input(TouchEvent("down", 0, 0.125, 0.25))
    await until(lambda: len(fake.inputs) >= 6)
    assert fake.inputs[-1] == "input motionevent DOWN 160 280"


async def test_pool_builds_the_fallback_from_its_mode() -> None:
    from cloudphone.vm.android import register
    from cloudphone.vm.pool import GuestSpec, InstancePool

    adb = await FakeAdbServer().start()
    FakeScreenrecordDevice(adb.add_device(FakeDevice("old")))
    pool = InstancePool()
    register(pool)
    try:
        options = {"serial": "old", "adb": adb.address, "mode": "screenrecord", "stamp": False}
        guest = await pool.create("legacy-1", GuestSpec("android", options=options))
        assert isinstance(guest, ScreenrecordGuest) and guest.state == GuestState.RUNNING
        assert guest.capabilities.encoded_output == "h264" and not guest.capabilities.clipboard
    finally:
        await pool.close()
        await adb.close()
