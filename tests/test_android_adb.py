"""The adb smart-socket client against a local server speaking the same protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from cloudphone.vm.android.adb import AdbClient, AdbError, DeviceInfo, encode_request

from tests.fakes.adb_server import FakeAdbServer, FakeDevice


@pytest.fixture
async def adb() -> AsyncIterator[FakeAdbServer]:
    server = await FakeAdbServer().start()
    server.add_device(FakeDevice("emulator-5554"))
    yield server
    await server.close()


def test_request_framing() -> None:
    assert encode_request("host:version") == b"000chost:version"


async def test_version_and_devices(adb: FakeAdbServer) -> None:
    client = AdbClient(adb.address)
    assert await client.version() == 0x29
    assert await client.devices() == [DeviceInfo("emulator-5554", "device")]


async def test_unknown_device_fails_with_the_servers_message(adb: FakeAdbServer) -> None:
    client = AdbClient(adb.address)
    with pytest.raises(AdbError, match="device 'nope' not found"):
        await client.shell("nope", "true")


async def test_no_server_is_a_clear_error() -> None:
    client = AdbClient("tcp:127.0.0.1:1", timeout=1)
    with pytest.raises(AdbError, match="cannot reach the adb server"):
        await client.version()


async def test_shell_output(adb: FakeAdbServer) -> None:
    adb.devices["emulator-5554"].simple_commands["getprop ro.build.version.sdk"] = b"34\n"
    client = AdbClient(adb.address)
    assert await client.shell("emulator-5554", "getprop ro.build.version.sdk") == b"34\n"
    assert adb.requests[-2:] == [
        "host:transport:emulator-5554",
        "shell:getprop ro.build.version.sdk",
    ]


async def test_push_large_file_in_chunks(adb: FakeAdbServer) -> None:
    client = AdbClient(adb.address)
    data = bytes(range(256)) * 1000  # 256 kB: several 64 kB DATA records
    await client.push("emulator-5554", data, "/data/local/tmp/scrcpy-server.jar")
    device = adb.devices["emulator-5554"]
    assert device.files["/data/local/tmp/scrcpy-server.jar"] == data
    assert device.modes["/data/local/tmp/scrcpy-server.jar"] == 0o100644
    with pytest.raises(AdbError, match="Permission denied"):
        await client.push("emulator-5554", b"x", "/system/x")


async def test_local_abstract_and_forward(adb: FakeAdbServer) -> None:
    device = adb.devices["emulator-5554"]

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write((await r.readexactly(5)).upper())
        await w.drain()
        w.close()

    device.abstract["scrcpy_00000001"] = echo
    client = AdbClient(adb.address)
    stream = await client.open_local_abstract("emulator-5554", "scrcpy_00000001")
    stream.writer.write(b"hello")
    assert await stream.reader.read() == b"HELLO"
    await stream.close()
    with pytest.raises(AdbError, match="connection refused"):
        await client.open_local_abstract("emulator-5554", "nothing")

    port = await client.forward("emulator-5554", "tcp:0", "localabstract:scrcpy_00000001")
    assert port
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"abcde")
    assert await r.read() == b"ABCDE"
    w.close()
    await client.kill_forward("emulator-5554", f"tcp:{port}")
    assert f"tcp:{port}" not in adb.forwards


async def test_reverse(adb: FakeAdbServer) -> None:
    client = AdbClient(adb.address)
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await got.put(await r.readexactly(3))
        w.close()

    listener = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    await client.reverse("emulator-5554", "localabstract:scrcpy_2", f"tcp:{port}")
    device = adb.devices["emulator-5554"]
    assert device.reverses == {"localabstract:scrcpy_2": f"tcp:{port}"}
    _, w = await device.connect_reverse("scrcpy_2")
    w.write(b"abc")
    assert await asyncio.wait_for(got.get(), 5) == b"abc"
    w.close()
    await client.kill_reverse("emulator-5554", "localabstract:scrcpy_2")
    assert device.reverses == {}
    listener.close()


async def test_track_devices(adb: FakeAdbServer) -> None:
    client = AdbClient(adb.address)
    seen: list[list[DeviceInfo]] = []
    tracker = client.track_devices()
    seen.append(await anext(tracker))
    adb.add_device(FakeDevice("R58M123", state="unauthorized"))
    seen.append(await asyncio.wait_for(anext(tracker), 5))
    adb.remove_device("emulator-5554")
    seen.append(await asyncio.wait_for(anext(tracker), 5))
    await tracker.aclose()
    assert seen == [
        [DeviceInfo("emulator-5554", "device")],
        [DeviceInfo("emulator-5554", "device"), DeviceInfo("R58M123", "unauthorized")],
        [DeviceInfo("R58M123", "unauthorized")],
    ]
