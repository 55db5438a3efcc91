"""A client of the adb server's socket protocol ("smart sockets"), asyncio-native.

We talk to the adb server directly instead of spawning the `adb` binary per call: no process
per touch, streams stay plain asyncio sockets, and tests point the client at a local fake
server that speaks the same bytes. The protocol (adb's `SERVICES.TXT`, `SYNC.TXT`):

* every request is a 4-hex-digit length + the service name; the reply is `OKAY` or `FAIL` +
  4-hex length + message;
* `host:transport:<serial>` binds the connection to one device; the next request names a
  device service (`shell:`, `exec:`, `sync:`, `localabstract:<name>`, `reverse:...`) and the
  socket then *is* that service's stream;
* `host-serial:<serial>:forward:<local>;<remote>` answers OKAY twice (connected, installed);
* `sync:` pushes files with little-endian `SEND`/`DATA`/`DONE` records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

log = logging.getLogger(__name__)

SYNC_DATA_MAX = 64 * 1024
DEFAULT_ADDRESS = "tcp:127.0.0.1:5037"


class AdbError(RuntimeError):
    """The adb server refused a request (FAIL) or the connection broke mid-request."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    serial: str
    state: str  # "device", "offline", "unauthorized", ...


def parse_device_list(text: str) -> list[DeviceInfo]:
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        serial, _, state = line.partition("\t")
        out.append(DeviceInfo(serial.strip(), state.strip().split()[0] if state.strip() else ""))
    return out


def encode_request(service: str) -> bytes:
    raw = service.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("adb request too long")
    return f"{len(raw):04x}".encode("ascii") + raw


async def read_status(reader: asyncio.StreamReader, what: str) -> None:
    """Read OKAY, or raise `AdbError` with the server's FAIL message."""
    try:
        status = await reader.readexactly(4)
    except asyncio.IncompleteReadError:
        raise AdbError(f"{what}: adb server closed the connection") from None
    if status == b"OKAY":
        return
    if status == b"FAIL":
        message = await read_protocol_string(reader, what)
        raise AdbError(f"{what}: {message}")
    raise AdbError(f"{what}: unexpected adb reply {status!r}")


async def read_protocol_string(reader: asyncio.StreamReader, what: str = "adb") -> str:
    try:
        size = int((await reader.readexactly(4)).decode("ascii"), 16)
        return (await reader.readexactly(size)).decode("utf-8", "replace")
    except (asyncio.IncompleteReadError, ValueError):
        raise AdbError(f"{what}: truncated reply") from None


class AdbStream:
    """One open service stream on a device (a shell, an abstract socket)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError, ConnectionError):
            await self.writer.wait_closed()


class AdbClient:
    """Requests to one adb server, addressed as `tcp:HOST:PORT` or `unix:PATH`."""

    def __init__(self, address: str = DEFAULT_ADDRESS, *, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        kind, _, rest = self.address.partition(":")
        try:
            if kind == "unix":
                conn = asyncio.open_unix_connection(rest)
            elif kind == "tcp":
                host, _, port = rest.rpartition(":")
                conn = asyncio.open_connection(host or "127.0.0.1", int(port))
            else:
                raise AdbError(f"bad adb server address {self.address!r}")
            return await asyncio.wait_for(conn, self.timeout)
        except (OSError, TimeoutError) as exc:
            raise AdbError(f"cannot reach the adb server at {self.address}: {exc}") from exc

    async def _request(self, service: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await self._connect()
        try:
            writer.write(encode_request(service))
            await asyncio.wait_for(read_status(reader, service), self.timeout)
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def _host_query(self, service: str) -> str:
        reader, writer = await self._request(service)
        try:
            return await asyncio.wait_for(read_protocol_string(reader, service), self.timeout)
        finally:
            writer.close()

    async def version(self) -> int:
        return int(await self._host_query("host:version"), 16)

    async def devices(self) -> list[DeviceInfo]:
        return parse_device_list(await self._host_query("host:devices"))

    async def track_devices(self) -> AsyncGenerator[list[DeviceInfo], None]:
        """Yield the full device list now and on every change, until the server goes away."""
        reader, writer = await self._request("host:track-devices")
        try:
            while True:
                try:
                    text = await read_protocol_string(reader, "host:track-devices")
                except AdbError:
                    return
                yield parse_device_list(text)
        finally:
            writer.close()

    async def open(self, serial: str, service: str) -> AdbStream:
        """Open a device service; the returned stream is that service's bytes."""
        reader, writer = await self._request(f"host:transport:{serial}")
        try:
            writer.write(encode_request(service))
            await asyncio.wait_for(read_status(reader, f"{serial} {service}"), self.timeout)
        except BaseException:
            writer.close()
            raise
        return AdbStream(reader, writer)

    async def shell(self, serial: str, command: str) -> bytes:
        """Run a command and return its output (raw `shell:` service: no exit status)."""
        stream = await self.open(serial, f"shell:{command}")
        try:
            return await asyncio.wait_for(stream.reader.read(), self.timeout)
        finally:
            await stream.close()

    async def open_shell(self, serial: str, command: str = "") -> AdbStream:
        """A long-lived shell (the scrcpy-server process, the fallback's input shell)."""
        return await self.open(serial, f"shell:{command}")

    async def exec_out(self, serial: str, command: str) -> AdbStream:
        """`exec:`: binary-clean stdout (no pty), for `screenrecord ... -`."""
        return await self.open(serial, f"exec:{command}")

    async def open_local_abstract(self, serial: str, name: str) -> AdbStream:
        return await self.open(serial, f"localabstract:{name}")

    async def push(
        self, serial: str, data: bytes, remote: str, *, mode: int = 0o644, mtime: int | None = None
    ) -> None:
        """Write `data` to `remote` on the device through the sync service."""
        stream = await self.open(serial, "sync:")
        w, r = stream.writer, stream.reader
        try:
            header = f"{remote},{0o100000 | mode}".encode()
            w.write(b"SEND" + struct.pack("<I", len(header)) + header)
            for off in range(0, len(data), SYNC_DATA_MAX):
                chunk = data[off : off + SYNC_DATA_MAX]
                w.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                await w.drain()
            w.write(b"DONE" + struct.pack("<I", int(time.time() if mtime is None else mtime)))
            await w.drain()
            reply = await asyncio.wait_for(r.readexactly(8), self.timeout)
            kind, size = reply[:4], struct.unpack("<I", reply[4:])[0]
            if kind == b"FAIL":
                message = (await r.readexactly(size)).decode("utf-8", "replace")
                raise AdbError(f"push {remote}: {message}")
            if kind != b"OKAY":
                raise AdbError(f"push {remote}: unexpected sync reply {kind!r}")
            w.write(b"QUIT" + struct.pack("<I", 0))
            await w.drain()
        except asyncio.IncompleteReadError:
            raise AdbError(f"push {remote}: connection closed") from None
        finally:
            await stream.close()

    async def forward(self, serial: str, local: str, remote: str) -> int | None:
        """`adb forward`; returns the port chosen when `local` is `tcp:0`."""
        reader, writer = await self._request(f"host-serial:{serial}:forward:{local};{remote}")
        try:
            await asyncio.wait_for(read_status(reader, "forward"), self.timeout)
            if local == "tcp:0":
                return int(await read_protocol_string(reader, "forward"))
            return None
        finally:
            writer.close()

    async def kill_forward(self, serial: str, local: str) -> None:
        reader, writer = await self._request(f"host-serial:{serial}:killforward:{local}")
        try:
            await asyncio.wait_for(read_status(reader, "killforward"), self.timeout)
        finally:
            writer.close()

    async def reverse(self, serial: str, remote: str, local: str) -> None:
        """`adb reverse`: the device's `remote` socket connects to our `local` one."""
        stream = await self.open(serial, f"reverse:forward:{remote};{local}")
        try:
            await asyncio.wait_for(read_status(stream.reader, "reverse"), self.timeout)
        finally:
            await stream.close()

    async def kill_reverse(self, serial: str, remote: str) -> None:
        stream = await self.open(serial, f"reverse:killforward:{remote}")
        try:
            await asyncio.wait_for(read_status(stream.reader, "reverse remove"), self.timeout)
        finally:
            await stream.close()
