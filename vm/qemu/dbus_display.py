"""Capture over QEMU's D-Bus display (`-display dbus,p2p=yes`): QEMU pushes damage, no requests.

How it connects (QEMU 7.2, peer-to-peer, no bus daemon): we hand QEMU one end of a socketpair
over QMP (`getfd` + `add_client protocol=@dbus-display`) and speak D-Bus on the other as the
client. We then call `org.qemu.Display1.Console.RegisterListener(h)` on Console_0 with one end
of a second socketpair; on it QEMU is again the SASL server, and once we authenticated it calls
`Scanout` (whole picture, new size) and `Update` (a dirty rectangle) on our listener object.

Why jeepney and not dbus-fast: dbus-fast's `MessageBus` (like jeepney's own connections)
assumes a message bus and sends `Hello` to org.freedesktop.DBus first, which a p2p peer does
not have. jeepney's low-level parser and serialiser are used as they are; the few lines of
SASL client are here.

QEMU 7.2 marks no end of a refresh (one `Update` per dirty band, top first), so updates are
folded into one frame once the socket has been quiet for `settle` (2 ms): pushing per call
would show a new latency stamp above a half-old picture. Unlike VNC there is no
idle back-off to work around: QEMU pushes each refresh's damage as it happens.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import os
import socket
import struct
import time
from typing import Any

import numpy as np
from cloudphone.vm.qemu.rfb import PIXEL_FORMAT_NAME, ResizeCallback, UpdateCallback
from jeepney import HeaderFields, MessageFlag, MessageType, Parser
from jeepney.low_level import Message
from jeepney.wrappers import new_error, new_header, new_method_return

log = logging.getLogger(__name__)

CONSOLE_PATH = "/org/qemu/Display1/Console_0"
LISTENER_PATH = "/org/qemu/Display1/Listener"
LISTENER_IFACE = "org.qemu.Display1.Listener"
# pixman formats whose little-endian bytes are B, G, R, X/A: what the encoder calls "bgra"
PIXMAN_X8R8G8B8 = 0x20020888
PIXMAN_A8R8G8B8 = 0x20028888
_BGRA_FORMATS = (PIXMAN_X8R8G8B8, PIXMAN_A8R8G8B8)
FRAME_PIXEL_FORMAT = PIXEL_FORMAT_NAME


class DbusDisplayError(ConnectionError):
    """The D-Bus display connection failed or closed."""


def _send_fd(qmp: Any, fd: int) -> None:
    """Pass `fd` to QEMU over the QMP socket (SCM_RIGHTS), for a following `getfd`."""
    try:
        qmp.send_fd_scm(fd)
        return
    except AttributeError:  # under uvloop: qemu.qmp reaches for `_sock`, which uvloop lacks
        pass
    raw = qmp._writer.transport.get_extra_info("socket")
    with socket.socket(fileno=os.dup(raw.fileno())) as sock:
        sock.sendmsg([b" "], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("@i", fd))])


def _method_call(path: str, interface: str, member: str, signature: str, body: tuple) -> Message:
    """A method call with no destination: a p2p peer has no bus names."""
    header = new_header(MessageType.method_call)
    header.fields[HeaderFields.path] = path
    header.fields[HeaderFields.interface] = interface
    header.fields[HeaderFields.member] = member
    header.fields[HeaderFields.signature] = signature
    return Message(header, body)


class _Peer:
    """One D-Bus p2p connection on a connected non-blocking unix socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = Parser()
        self.serial = 0
        self._pending: dict[int, asyncio.Future[Message]] = {}

    async def _recv(self, size: int = 1 << 20) -> bytes:
        while True:
            try:
                data = self.sock.recv(size)
            except BlockingIOError:
                await self.readable()
                continue
            if not data:
                raise DbusDisplayError("D-Bus peer closed the connection")
            return data

    async def readable(self, within: float | None = None) -> bool:
        """Wait until the socket has data (False after `within` s). Cancel-safe: reads nothing."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self.sock.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await asyncio.wait_for(ready, within)
            return True
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)

    async def read_line(self, buf: bytearray) -> bytes:
        while b"\r\n" not in buf:
            buf += await self._recv(4096)
        line, _, rest = bytes(buf).partition(b"\r\n")
        buf[:] = rest
        return line

    async def auth_client(self) -> None:
        uid = binascii.hexlify(str(os.geteuid()).encode())
        await self.send_raw(b"\0AUTH EXTERNAL " + uid + b"\r\n")
        buf = bytearray()
        if not (await self.read_line(buf)).startswith(b"OK "):
            raise DbusDisplayError("QEMU refused D-Bus authentication")
        await self.send_raw(b"NEGOTIATE_UNIX_FD\r\n")
        if not (await self.read_line(buf)).startswith(b"AGREE_UNIX_FD"):
            raise DbusDisplayError("QEMU cannot take file descriptors over D-Bus")
        await self.send_raw(b"BEGIN\r\n")
        if buf:
            self.parser.add_data(bytes(buf))

    async def send_raw(self, data: bytes, fds: list[int] | None = None) -> None:
        loop = asyncio.get_running_loop()
        if fds:
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, np.array(fds, np.int32).tobytes())]
            sent = self.sock.sendmsg([data], ancillary)
            data = data[sent:]
        if data:
            await loop.sock_sendall(self.sock, data)

    async def send(self, message: Message) -> int:
        """Send one message; file descriptors in its body go along as SCM_RIGHTS."""
        self.serial += 1
        fds: list[int] = []
        data = message.serialise(serial=self.serial, fds=fds)
        await self.send_raw(data, fds)
        return self.serial

    async def call(self, message: Message) -> Message:
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[self.serial + 1] = future  # before sending: the reply may come at once
        await self.send(message)
        return await future

    def resolve(self, message: Message) -> bool:
        """Route a method return/error to the waiting `call`; True if it was one."""
        if message.header.message_type not in (MessageType.method_return, MessageType.error):
            return False
        future = self._pending.pop(message.header.fields.get(HeaderFields.reply_serial, -1), None)
        if future is not None and not future.done():
            future.set_result(message)
        return True

    def fail_pending(self, exc: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()

    async def messages(self) -> list[Message]:
        """Everything complete in the socket now (waits for at least some data)."""
        while True:
            out = list(iter(self.parser.get_next_message, None))
            if out:
                return out
            self.parser.add_data(await self._recv())

    def close(self) -> None:
        self.sock.close()


class DbusDisplay:
    """A listener on QEMU's D-Bus display. Same callbacks as `RfbClient`."""

    def __init__(
        self, qmp: Any, on_update: UpdateCallback, on_resize: ResizeCallback | None = None
    ) -> None:
        self._qmp = qmp
        self._on_update = on_update
        self._on_resize = on_resize
        self._control: _Peer | None = None
        self._listener: _Peer | None = None
        self._control_task: asyncio.Task[None] | None = None
        self.framebuffer = np.zeros((0, 0, 4), np.uint8)
        self.updates = 0
        self.settle = 0.002  # s of quiet that ends one refresh's burst of Update calls
        self._bands: list[tuple[int, int]] = []
        self._full_next = True  # first picture and every Scanout: whole

    async def connect(self, within: float = 10.0) -> None:
        await asyncio.wait_for(self._connect(), within)

    async def _connect(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _send_fd(self._qmp, theirs.fileno())
            await self._qmp.execute("getfd", {"fdname": "cloudphone-dbus"})
            await self._qmp.execute(
                "add_client", {"protocol": "@dbus-display", "fdname": "cloudphone-dbus"}
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        control = self._control = _Peer(ours)
        await control.auth_client()
        self._control_task = asyncio.get_running_loop().create_task(self._read_control())

        mine, qemus = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mine.setblocking(False)
        self._listener = _Peer(mine)
        try:
            call = _method_call(
                CONSOLE_PATH,
                "org.qemu.Display1.Console",
                "RegisterListener",
                "h",
                (qemus.fileno(),),
            )
            reply = await control.call(call)
        finally:
            qemus.close()
        if reply.header.message_type == MessageType.error:
            raise DbusDisplayError(f"RegisterListener failed: {reply.body}")
        # QEMU is the D-Bus server on the listener connection too: it waits for our SASL
        await self._listener.auth_client()

    async def _read_control(self) -> None:
        control = self._control
        assert control is not None
        try:
            while True:
                for message in await control.messages():
                    control.resolve(message)  # signals on the control connection are ignored
        except (OSError, DbusDisplayError) as exc:
            control.fail_pending(DbusDisplayError(str(exc)))

    async def run(self) -> None:
        """Serve QEMU's listener calls until it goes away; raises DbusDisplayError then."""
        listener = self._listener
        if listener is None:
            raise DbusDisplayError("not connected")
        changed = False
        try:
            while True:
                # a refresh arrives as several Update calls back to back; no end marker in
                # 7.2, so the picture is complete once the socket stays quiet a moment
                if changed and not await listener.readable(self.settle):
                    self.updates += 1
                    damage = None if self._full_next else tuple(self._bands)
                    self._full_next, self._bands = False, []
                    self._on_update(self.framebuffer, time.monotonic(), damage)
                    changed = False
                    continue
                for message in await listener.messages():
                    if message.header.message_type == MessageType.method_call:
                        changed |= await self._handle(listener, message)
        except OSError as exc:
            raise DbusDisplayError(str(exc)) from exc

    async def _handle(self, peer: _Peer, message: Message) -> bool:
        fields = message.header.fields
        member = fields.get(HeaderFields.member)
        iface = fields.get(HeaderFields.interface)
        changed = False
        reply: Message | None = new_method_return(message)
        if iface == LISTENER_IFACE and member == "Update":
            x, y, w, h, stride, fmt, data = message.body
            changed = self._blit(x, y, w, h, stride, fmt, data)
        elif iface == LISTENER_IFACE and member == "Scanout":
            w, h, stride, fmt, data = message.body
            self._resize(w, h)
            self._full_next = True
            changed = self._blit(0, 0, w, h, stride, fmt, data)
        elif iface == LISTENER_IFACE:
            pass  # Disable, MouseSet, CursorDefine, ScanoutDMABUF...: nothing to show
        elif iface == "org.freedesktop.DBus.Properties" and member == "GetAll":
            reply = new_method_return(message, "a{sv}", ({},))
        else:
            reply = new_error(message, "org.freedesktop.DBus.Error.UnknownMethod")
        if not message.header.flags & MessageFlag.no_reply_expected:
            await peer.send(reply)
        return changed

    def _resize(self, width: int, height: int) -> None:
        if (height, width) != self.framebuffer.shape[:2]:
            self.framebuffer = np.zeros((height, width, 4), np.uint8)
            if self._on_resize is not None:
                self._on_resize(width, height)

    def _blit(self, x: int, y: int, w: int, h: int, stride: int, fmt: int, data: bytes) -> bool:
        if fmt not in _BGRA_FORMATS:
            log.warning("D-Bus display: unsupported pixman format %#x", fmt)
            return False
        fb = self.framebuffer
        if w <= 0 or h <= 0 or x + w > fb.shape[1] or y + h > fb.shape[0]:
            return False
        rows = np.frombuffer(data, np.uint8, count=stride * (h - 1) + w * 4)
        src = np.lib.stride_tricks.as_strided(rows, (h, w, 4), (stride, 4, 1))
        fb[y : y + h, x : x + w] = src
        self._bands.append((y, y + h))
        return True

    async def close(self) -> None:
        if self._control_task is not None:
            self._control_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._control_task
        for peer in (self._listener, self._control):
            if peer is not None:
                peer.close()
        self._listener = self._control = None
