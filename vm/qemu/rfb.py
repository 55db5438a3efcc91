"""A minimal asyncio RFB (VNC) client for QEMU's VNC server on a unix socket.

Why our own: the Python VNC clients on PyPI are either blocking, unmaintained, or built for
screenshots (vncdotyou on Twisted), and none gives zero-copy framebuffer access or the knobs
latency needs. We speak only what QEMU's server needs locally: RFB 3.8, security "None", Raw
encoding (fastest on a local socket: a 3.7 MB frame in ~2 ms), DesktopSize and
ExtendedDesktopSize (resolution changes without reconnecting).

Copies: Raw pixel rows are received with `sock_recv_into` straight into the framebuffer array
when a rectangle spans whole rows (the common case), else through one scratch buffer; the
callback gets the framebuffer itself and copies only what it hands on.

The idle-refresh pitfall (FIELD-NOTES): QEMU backs its refresh timer off by 50 ms per idle
check, up to 3 s, and only client messages of type > 3 reset that — QMP input does not. So the
client sends an empty ClientCutText (type 6) every `keepalive` seconds while enabled, and
`poke()` sends one at once (the guest calls it after each input), so input shows within one
30 ms refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ENCODING_RAW = 0
ENCODING_DESKTOP_SIZE = -223
ENCODING_EXTENDED_DESKTOP_SIZE = -308
BYTES_PER_PIXEL = 4
#: 32 bpp, depth 24, little-endian, true colour, 8 bits each, red<<16 green<<8 blue: B,G,R,X bytes.
PIXEL_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
PIXEL_FORMAT_NAME = "bgra"  # FFmpeg's name for that byte order (the X byte is ignored)
_CUT_TEXT_EMPTY = struct.pack(">B3xI", 6, 0)

#: Row bands [y0, y1) changed since the previous update; None: assume everything changed.
Damage = tuple[tuple[int, int], ...] | None
UpdateCallback = Callable[[np.ndarray, float, Damage], None]
ResizeCallback = Callable[[int, int], None]


class RfbError(ConnectionError):
    """The server closed the connection or spoke something we do not understand."""


class RfbClient:
    """Connects to QEMU's VNC unix socket and reports every complete framebuffer update.

    `on_update(framebuffer, received_at, damage)` runs on the event loop after each update with
    the H x W x 4 array it owns (copy what you keep) and the row bands the update rewrote.
    `on_resize(width, height)` runs before the first update of a new size.
    """

    def __init__(
        self,
        path: Path,
        on_update: UpdateCallback,
        on_resize: ResizeCallback | None = None,
        keepalive: float | None = 0.02,
    ) -> None:
        self.path = path
        self._on_update = on_update
        self._on_resize = on_resize
        self._keepalive = keepalive
        self._sock: socket.socket | None = None
        self._send_lock = asyncio.Lock()
        self._keepalive_task: asyncio.Task[None] | None = None
        self.framebuffer = np.zeros((0, 0, BYTES_PER_PIXEL), np.uint8)
        self.name = ""
        self.updates = 0
        self._full_next = True  # the first picture, and the first after a resize, are whole

    @property
    def width(self) -> int:
        return int(self.framebuffer.shape[1])

    @property
    def height(self) -> int:
        return int(self.framebuffer.shape[0])

    async def connect(self, within: float = 5.0) -> None:
        """Open the socket and run the RFB 3.8 handshake up to our first update request."""
        await asyncio.wait_for(self._connect(), within)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, str(self.path))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        version = await self._recv(12)
        if not version.startswith(b"RFB 003."):
            raise RfbError(f"not an RFB server: {version!r}")
        await self._send(b"RFB 003.008\n")
        (count,) = await self._unpack(">B")
        if count == 0:
            (length,) = await self._unpack(">I")
            reason = (await self._recv(length)).decode(errors="replace")
            raise RfbError(f"server refused: {reason}")
        types = await self._recv(count)
        if 1 not in types:
            raise RfbError(f"server wants authentication {list(types)}; use a local socket")
        await self._send(b"\x01")
        (result,) = await self._unpack(">I")
        if result != 0:
            raise RfbError("security handshake failed")
        await self._send(b"\x01")  # ClientInit: shared, other viewers may stay
        width, height = await self._unpack(">HH")
        await self._recv(16)  # server pixel format: we set ours below
        (name_len,) = await self._unpack(">I")
        self.name = (await self._recv(name_len)).decode(errors="replace")
        self._resize(width, height)
        await self._send(b"\x00\x00\x00\x00" + PIXEL_FORMAT)
        encodings = (ENCODING_RAW, ENCODING_EXTENDED_DESKTOP_SIZE, ENCODING_DESKTOP_SIZE)
        await self._send(struct.pack(f">BxH{len(encodings)}i", 2, len(encodings), *encodings))
        await self._request(incremental=False)
        self.set_keepalive(self._keepalive)

    def set_keepalive(self, interval: float | None) -> None:
        """Send an empty ClientCutText every `interval` s (None: never) to keep refresh fast."""
        self._keepalive = interval
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            self._keepalive_task = None
        if interval and self._sock is not None:
            self._keepalive_task = asyncio.get_running_loop().create_task(
                self._keepalive_loop(interval)
            )

    async def _keepalive_loop(self, interval: float) -> None:
        with contextlib.suppress(OSError, RfbError):
            while True:
                await self._send(_CUT_TEXT_EMPTY)
                await asyncio.sleep(interval)

    def poke(self) -> None:
        """Reset QEMU's idle back-off now (after input), without waiting for the keepalive."""
        sock = self._sock
        if sock is not None and not self._send_lock.locked():
            with contextlib.suppress(OSError):
                sock.send(_CUT_TEXT_EMPTY)

    async def request_full_update(self) -> None:
        await self._request(incremental=False)

    async def run(self) -> None:
        """Read server messages until the connection ends; raises RfbError then."""
        while True:
            (kind,) = await self._unpack(">B")
            if kind == 0:
                await self._read_update()
            elif kind == 1:  # SetColourMapEntries: not used with true colour, skip
                _, count = await self._unpack(">xHH")
                await self._recv(6 * count)
            elif kind == 2:  # Bell
                pass
            elif kind == 3:  # ServerCutText
                (length,) = await self._unpack(">3xI")
                await self._recv(length)
            else:
                raise RfbError(f"unknown server message {kind}")

    async def close(self) -> None:
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._keepalive_task
            self._keepalive_task = None
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    # -------------------------------------------------------------- internals

    def _resize(self, width: int, height: int) -> bool:
        if (width, height) == (self.width, self.height):
            return False
        self.framebuffer = np.zeros((height, width, BYTES_PER_PIXEL), np.uint8)
        self._full_next = True
        if self._on_resize is not None:
            self._on_resize(width, height)
        return True

    async def _read_update(self) -> None:
        (count,) = await self._unpack(">xH")
        bands: list[tuple[int, int]] = []  # a resize alone has none: pixels come next update
        for _ in range(count):
            x, y, w, h, encoding = await self._unpack(">HHHHi")
            if encoding == ENCODING_RAW:
                await self._read_raw(x, y, w, h)
                bands.append((y, y + h))
            elif encoding == ENCODING_DESKTOP_SIZE:
                self._resize(w, h)
            elif encoding == ENCODING_EXTENDED_DESKTOP_SIZE:
                (screens,) = await self._unpack(">B3x")
                await self._recv(16 * screens)
                if y == 0:  # status 0: the change happened (others answer a client request)
                    self._resize(w, h)
            else:
                raise RfbError(f"unexpected encoding {encoding}")
        received_at = time.monotonic()
        await self._request(incremental=True)  # QEMU sends a full picture after a resize itself
        if bands:
            self.updates += 1
            damage, self._full_next = (None if self._full_next else tuple(bands)), False
            self._on_update(self.framebuffer, received_at, damage)

    async def _read_raw(self, x: int, y: int, w: int, h: int) -> None:
        fb = self.framebuffer
        if x + w > fb.shape[1] or y + h > fb.shape[0]:
            raise RfbError(f"rectangle {w}x{h}+{x}+{y} outside {fb.shape[1]}x{fb.shape[0]}")
        if x == 0 and w == fb.shape[1]:  # whole rows: contiguous in the framebuffer
            await self._recv_into(fb[y : y + h].data.cast("B"))
        else:
            scratch = np.empty((h, w, BYTES_PER_PIXEL), np.uint8)
            await self._recv_into(scratch.data.cast("B"))
            fb[y : y + h, x : x + w] = scratch

    async def _request(self, incremental: bool) -> None:
        await self._send(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, self.width, self.height))

    async def _send(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            raise RfbError("not connected")
        async with self._send_lock:
            await asyncio.get_running_loop().sock_sendall(sock, data)

    async def _recv_into(self, view: memoryview) -> None:
        sock = self._sock
        if sock is None:
            raise RfbError("not connected")
        loop = asyncio.get_running_loop()
        done = 0
        total = len(view)
        while done < total:
            try:
                n = sock.recv_into(view[done:])  # fast path: data already queued
            except BlockingIOError:
                n = await loop.sock_recv_into(sock, view[done:])
            if n == 0:
                raise RfbError("server closed the connection")
            done += n

    async def _recv(self, size: int) -> bytes:
        buf = bytearray(size)
        if size:
            await self._recv_into(memoryview(buf))
        return bytes(buf)

    async def _unpack(self, fmt: str) -> tuple[int, ...]:
        return struct.unpack(fmt, await self._recv(struct.calcsize(fmt)))
