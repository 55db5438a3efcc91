"""A stand-in for the adb server, speaking its smart-socket protocol on 127.0.0.1.

No Android device can exist in this environment, so the edge's ADB client is tested against
this server: same request framing (4 hex digits + service), same OKAY/FAIL replies, the same
sync records for push, double OKAY for forward, device services bound by
`host:transport:<serial>`. Devices are in-process objects whose shell commands and abstract
sockets tests script.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

ShellHandler = Callable[[str, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
SocketHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class FakeDevice:
    """One device as the adb server sees it: files, shell commands, abstract sockets."""

    serial: str
    state: str = "device"
    files: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    shell_log: list[str] = field(default_factory=list)
    abstract: dict[str, SocketHandler] = field(default_factory=dict)
    reverses: dict[str, str] = field(default_factory=dict)
    # (prefix, handler): the first whose prefix starts the command runs it.
    shell_handlers: list[tuple[str, ShellHandler]] = field(default_factory=list)
    simple_commands: dict[str, bytes] = field(default_factory=dict)

    def on_shell(self, prefix: str, handler: ShellHandler) -> None:
        self.shell_handlers.append((prefix, handler))

    async def connect_reverse(self, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """What a device process does to reach `localabstract:name` under `adb reverse`."""
        target = self.reverses.get(f"localabstract:{name}")
        if target is None:
            raise ConnectionRefusedError(f"no reverse for {name}")
        kind, _, port = target.partition(":")
        assert kind == "tcp"
        return await asyncio.open_connection("127.0.0.1", int(port))


def _req(text: str) -> bytes:
    raw = text.encode()
    return f"{len(raw):04x}".encode() + raw


def _fail(message: str) -> bytes:
    return b"FAIL" + _req(message)


class FakeAdbServer:
    """Listens on 127.0.0.1:<ephemeral>; `address` is what `AdbClient` takes."""

    def __init__(self) -> None:
        self.devices: dict[str, FakeDevice] = {}
        self.requests: list[str] = []
        self.forwards: dict[str, tuple[str, str]] = {}
        self._server: asyncio.Server | None = None
        self._forward_servers: dict[str, asyncio.Server] = {}
        self._trackers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[object]] = set()
        self.port = 0

    @property
    def address(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    async def start(self) -> FakeAdbServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        for srv in [self._server, *self._forward_servers.values()]:
            if srv is not None:
                srv.close()
        for w in self._trackers:
            w.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def add_device(self, device: FakeDevice) -> FakeDevice:
        self.devices[device.serial] = device
        self._notify_trackers()
        return device

    def remove_device(self, serial: str) -> None:
        self.devices.pop(serial, None)
        self._notify_trackers()

    def _device_list(self) -> bytes:
        return "".join(f"{d.serial}\t{d.state}\n" for d in self.devices.values()).encode()

    def _notify_trackers(self) -> None:
        payload = self._device_list()
        for w in list(self._trackers):
            if w.is_closing():
                self._trackers.remove(w)
                continue
            w.write(f"{len(payload):04x}".encode() + payload)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        except asyncio.CancelledError:
            pass  # close(): asyncio's stream callback would log a cancelled handler as an error
        finally:
            self._tasks.discard(task)
            if writer not in self._trackers:
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> str:
        size = int((await reader.readexactly(4)).decode("ascii"), 16)
        text = (await reader.readexactly(size)).decode()
        self.requests.append(text)
        return text

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await self._read_request(reader)
        if request == "host:version":
            writer.write(b"OKAY" + _req("0029"))
        elif request == "host:devices":
            writer.write(b"OKAY" + _req(self._device_list().decode()))
        elif request == "host:track-devices":
            payload = self._device_list()
            writer.write(b"OKAY" + f"{len(payload):04x}".encode() + payload)
            self._trackers.append(writer)
            await reader.read()  # until the client hangs up
        elif request.startswith("host:transport:"):
            device = self.devices.get(request.removeprefix("host:transport:"))
            if device is None or device.state != "device":
                writer.write(_fail(f"device '{request.removeprefix('host:transport:')}' not found"))
                return
            writer.write(b"OKAY")
            await self._device_service(device, await self._read_request(reader), reader, writer)
        elif request.startswith("host-serial:"):
            await self._host_serial(request, writer)
        else:
            writer.write(_fail(f"unknown host service {request!r}"))
        await writer.drain()

    async def _host_serial(self, request: str, writer: asyncio.StreamWriter) -> None:
        _, serial, rest = request.split(":", 2)
        device = self.devices.get(serial)
        if device is None:
            writer.write(_fail(f"device '{serial}' not found"))
            return
        if rest.startswith("forward:"):
            local, _, remote = rest.removeprefix("forward:").partition(";")
            if not remote.startswith("localabstract:") or not local.startswith("tcp:"):
                writer.write(_fail(f"cannot forward {local} -> {remote}"))
                return
            name = remote.removeprefix("localabstract:")

            async def bridge(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                handler = device.abstract.get(name)
                if handler is None:  # adb accepts, then closes: nothing listens on the device
                    w.close()
                    return
                await handler(r, w)

            srv = await asyncio.start_server(bridge, "127.0.0.1", int(local.removeprefix("tcp:")))
            port = srv.sockets[0].getsockname()[1]
            self._forward_servers[f"tcp:{port}"] = srv
            self.forwards[f"tcp:{port}"] = (serial, remote)
            writer.write(b"OKAYOKAY")  # connected, then installed
            if local == "tcp:0":
                writer.write(_req(str(port)))
        elif rest.startswith("killforward:"):
            local = rest.removeprefix("killforward:")
            stopped = self._forward_servers.pop(local, None)
            self.forwards.pop(local, None)
            if stopped is None:
                writer.write(_fail(f"listener '{local}' not found"))
                return
            stopped.close()
            writer.write(b"OKAYOKAY")
        else:
            writer.write(_fail(f"unknown service {rest!r}"))

    async def _device_service(
        self,
        device: FakeDevice,
        service: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if service.startswith(("shell:", "exec:")):
            command = service.split(":", 1)[1]
            device.shell_log.append(command)
            for prefix, handler in device.shell_handlers:
                if command.startswith(prefix):
                    writer.write(b"OKAY")
                    await writer.drain()
                    await handler(command, reader, writer)
                    return
            writer.write(b"OKAY")
            writer.write(device.simple_commands.get(command, b""))
        elif service == "sync:":
            writer.write(b"OKAY")
            await self._sync(device, reader, writer)
        elif service.startswith("localabstract:"):
            listener = device.abstract.get(service.removeprefix("localabstract:"))
            if listener is None:
                writer.write(_fail("connection refused"))
                return
            writer.write(b"OKAY")
            await writer.drain()
            await listener(reader, writer)
        elif service.startswith("reverse:forward:"):
            remote, _, local = service.removeprefix("reverse:forward:").partition(";")
            device.reverses[remote] = local
            writer.write(b"OKAYOKAY")  # service opened, then the device's own status
        elif service.startswith("reverse:killforward:"):
            device.reverses.pop(service.removeprefix("reverse:killforward:"), None)
            writer.write(b"OKAYOKAY")
        else:
            writer.write(_fail(f"unknown device service {service!r}"))

    async def _sync(
        self, device: FakeDevice, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            cmd = await reader.readexactly(4)
            (size,) = struct.unpack("<I", await reader.readexactly(4))
            if cmd == b"QUIT":
                return
            if cmd != b"SEND":
                writer.write(b"FAIL" + struct.pack("<I", 11) + b"bad command")
                return
            path, _, mode = (await reader.readexactly(size)).decode().rpartition(",")
            data = bytearray()
            while True:
                kind = await reader.readexactly(4)
                (n,) = struct.unpack("<I", await reader.readexactly(4))
                if kind == b"DATA":
                    if n > 64 * 1024:
                        writer.write(b"FAIL" + struct.pack("<I", 14) + b"data too large")
                        return
                    data += await reader.readexactly(n)
                elif kind == b"DONE":
                    break
                else:
                    writer.write(b"FAIL" + struct.pack("<I", 12) + b"bad sync rec")
                    return
            if not path.startswith("/data/local/tmp/"):
                msg = f"remote couldn't create file: Permission denied: {path}".encode()
                writer.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                continue
            device.files[path] = bytes(data)
            device.modes[path] = int(mode)
            writer.write(b"OKAY" + struct.pack("<I", 0))
            await writer.drain()
