"""A stand-in for scrcpy-server on a fake Android device, byte for byte on the wire.

It is started the way the real one is (`CLASSPATH=... app_process / com.genymobile.scrcpy.Server
<version> key=value...` through the fake adb server's shell), refuses a jar of another version,
opens its sockets in scrcpy's order (video, then control; a dummy byte on the first forward
socket; the 64-byte device name), and streams real H.264 made by our libx264 encoder framed
the way MediaCodec output is: SPS/PPS as a separate *config* packet at each capture session,
keyframes without parameter sets, 12-byte headers with the version's flag layout. Rotation,
RESET_VIDEO, clipboard changes, and broken output (truncated header, absurd size, unknown codec
id, dying mid-stream) are scripted by tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
from av.audio.codeccontext import AudioCodecContext
from cloudphone.codecs import EncoderConfig, create_encoder
from cloudphone.codecs.base import VideoEncoder
from cloudphone.vm.android import annexb
from cloudphone.vm.android.control import ControlType
from cloudphone.vm.android.scrcpy_protocol import (
    CODEC_H264,
    CODEC_OPUS,
    AckClipboardMessage,
    ClipboardMessage,
    ServerVersion,
    Session,
    encode_device_message,
    encode_device_name,
    encode_frame_header,
    encode_session,
    parse_server_command,
)
from cloudphone.vm.guest import RawFrame

from tests.fakes.adb_server import FakeAdbServer, FakeDevice

FAKE_JAR_MAGIC = b"FAKE-SCRCPY-SERVER "
T = TypeVar("T")


def fake_server_jar(version: str) -> bytes:
    """What the tests hand the guest as "the user-supplied scrcpy-server jar"."""
    return FAKE_JAR_MAGIC + version.encode()


@dataclass(frozen=True)
class Touch:
    action: int
    pointer_id: int
    x: int
    y: int
    width: int
    height: int
    pressure: float


@dataclass
class Received:
    """Everything the fake server was asked to do, in order."""

    touches: list[Touch] = field(default_factory=list)
    dropped_touches: list[Touch] = field(default_factory=list)
    keys: list[tuple[int, int, int]] = field(default_factory=list)  # (action, keycode, meta)
    texts: list[str] = field(default_factory=list)
    clipboard_sets: list[tuple[int, str, bool]] = field(default_factory=list)
    resets: int = 0
    rotations: int = 0
    messages: list[int] = field(default_factory=list)


def parse_control_message(buf: bytes | bytearray) -> tuple[dict[str, object] | None, int]:
    """Server side of the control protocol (ControlMessageReader.java): (message, consumed)."""
    if not buf:
        return None, 0
    kind = buf[0]
    n = len(buf)

    def need(size: int) -> bool:
        return n >= size

    if kind == ControlType.INJECT_KEYCODE:
        if not need(14):
            return None, 0
        action, code, repeat, meta = struct.unpack_from(">BIII", buf, 1)
        return {"type": kind, "action": action, "keycode": code, "repeat": repeat, "meta": meta}, 14
    if kind in (ControlType.INJECT_TEXT,):
        if not need(5):
            return None, 0
        (size,) = struct.unpack_from(">I", buf, 1)
        if not need(5 + size):
            return None, 0
        return {"type": kind, "text": bytes(buf[5 : 5 + size]).decode()}, 5 + size
    if kind == ControlType.INJECT_TOUCH_EVENT:
        if not need(32):
            return None, 0
        action, pid, x, y, w, h, p, ab, b = struct.unpack_from(">BQiiHHHII", buf, 1)
        pressure = 1.0 if p == 0xFFFF else p / 65536.0
        return {
            "type": kind, "action": action, "pointer_id": pid, "x": x, "y": y,
            "width": w, "height": h, "pressure": pressure, "action_button": ab, "buttons": b,
        }, 32  # fmt: skip
    if kind == ControlType.INJECT_SCROLL_EVENT:
        return ({"type": kind}, 21) if need(21) else (None, 0)
    if kind in (
        ControlType.BACK_OR_SCREEN_ON,
        ControlType.GET_CLIPBOARD,
        ControlType.SET_DISPLAY_POWER,
    ):
        return ({"type": kind, "value": buf[1]}, 2) if need(2) else (None, 0)
    if kind == ControlType.SET_CLIPBOARD:
        if not need(14):
            return None, 0
        seq, paste, size = struct.unpack_from(">QBI", buf, 1)
        if not need(14 + size):
            return None, 0
        text = bytes(buf[14 : 14 + size]).decode()
        return {"type": kind, "sequence": seq, "paste": bool(paste), "text": text}, 14 + size
    if kind in (
        ControlType.EXPAND_NOTIFICATION_PANEL,
        ControlType.EXPAND_SETTINGS_PANEL,
        ControlType.COLLAPSE_PANELS,
        ControlType.ROTATE_DEVICE,
        ControlType.OPEN_HARD_KEYBOARD_SETTINGS,
        ControlType.RESET_VIDEO,
    ):
        return {"type": kind}, 1
    raise ValueError(f"Unknown event type: {kind}")


def _wants(opts: dict[str, str], stream: str) -> bool:
    return opts.get(stream, "true") != "false"  # scrcpy-server defaults: audio and control on


def make_picture(width: int, height: int, index: int) -> np.ndarray:
    """A cheap moving yuv420p picture (a bar sweeping down a gradient)."""
    yuv = np.empty((height * 3 // 2, width), dtype=np.uint8)
    yuv[:height] = (np.arange(width, dtype=np.uint16) * 255 // max(1, width - 1)).astype(np.uint8)
    bar = (index * 8) % height
    yuv[bar : bar + 16, :] = 235
    yuv[height:] = 128
    return yuv


class FakeScrcpyDevice:
    """Installs a fake scrcpy-server into a `FakeDevice`; one server process at a time."""

    def __init__(
        self,
        device: FakeDevice,
        *,
        version: str = "3.3.4",
        width: int = 320,
        height: int = 640,
        fps: int = 30,
        name: str = "Fake Pixel",
        codec_id: int = CODEC_H264,
        android_sdk: int = 34,
    ) -> None:
        self.device = device
        self.version = ServerVersion.parse(version)
        self.natural = (width, height)
        self.fps = fps
        self.name = name
        self.codec_id = codec_id
        self.android_sdk = android_sdk
        self.audio_packets_sent = 0
        self.rotation = 0
        self.received = Received()
        self.starts = 0
        self.options: dict[str, str] = {}
        self.clipboard = ""
        self.frames_sent = 0
        self.sessions_sent = 0
        self.break_video: bytes | None = None  # raw bytes to send instead of the next frame
        self._video: asyncio.StreamWriter | None = None
        self._control: asyncio.StreamWriter | None = None
        self._shell: asyncio.StreamWriter | None = None
        self._reset = asyncio.Event()
        self._stop = asyncio.Event()
        self.running = asyncio.Event()
        self.received_event = asyncio.Event()
        # One thread owns the encoder: a cancelled task must not let close() run in another
        # thread while an encode() is still inside libx264.
        self._encoder_thread = ThreadPoolExecutor(1, thread_name_prefix="fake-phone")
        device.files.setdefault("/system/bin/app_process", b"")
        device.on_shell("CLASSPATH=", self._run_server)

    @property
    def size(self) -> tuple[int, int]:
        w, h = self.natural
        return (h, w) if self.rotation % 180 else (w, h)

    async def _in_encoder_thread(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._encoder_thread, fn, *args)

    # ---------------------------------------------------------------- scripted events

    def rotate(self) -> None:
        """The user turned the phone: a new capture session with the other orientation."""
        self.rotation = (self.rotation + 90) % 360
        self._reset.set()

    async def set_device_clipboard(self, text: str) -> None:
        self.clipboard = text
        if self._control is not None:
            self._control.write(encode_device_message(ClipboardMessage(text)))
            await self._control.drain()

    def die(self) -> None:
        """The server process is killed: every socket and the shell close at once."""
        self._stop.set()
        for w in (self._video, self._control, self._shell):
            if w is not None:
                w.close()

    async def wait_for(self, predicate: object, within: float = 5.0) -> None:
        """Wait until `predicate()` is true (checked whenever a control message arrives)."""
        assert callable(predicate)
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("fake device did not see what was expected")
            self.received_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.received_event.wait(), min(remaining, 0.1))

    # ---------------------------------------------------------------- the server process

    async def _run_server(
        self, command: str, reader: asyncio.StreamReader, shell: asyncio.StreamWriter
    ) -> None:
        classpath, version, opts = parse_server_command(command)
        jar = self.device.files.get(classpath)
        if jar is None:
            shell.write(f"Error: Could not find or load main class {classpath}\n".encode())
            shell.close()
            return
        if jar != fake_server_jar(str(version)) or version != self.version:
            shell.write(
                f"[server] ERROR: The server version ({self.version}) does not match"
                f" the client ({version})\n".encode()
            )
            shell.close()
            return
        self.starts += 1
        self.options = opts
        self._shell = shell
        self._stop = asyncio.Event()
        self._reset = asyncio.Event()
        shell.write(f"[server] INFO: Device: [Fake] {self.name} (Android 14)\n".encode())
        try:
            await self._serve(opts)
        except (ConnectionError, OSError):
            pass
        finally:
            self.running.clear()
            for w in (self._video, self._control):
                if w is not None:
                    w.close()
            self._video = self._control = None
            shell.close()

    async def _open_sockets(
        self, opts: dict[str, str]
    ) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        name = f"scrcpy_{opts['scid']}"
        count = 1 + _wants(opts, "audio") + _wants(opts, "control")
        socks: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        if opts.get("tunnel_forward") == "true":
            queue: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
                asyncio.Queue()
            )
            done = asyncio.Event()

            async def accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                await queue.put((r, w))
                await done.wait()  # keep the adb connection handler alive while in use
                await self._stop.wait()

            self.device.abstract[name] = accept
            try:
                for i in range(count):
                    r, w = await asyncio.wait_for(queue.get(), 10)
                    if i == 0:
                        w.write(b"\x00")  # dummy byte on the first forward socket
                    socks.append((r, w))
            finally:
                self.device.abstract.pop(name, None)
                done.set()
        else:
            for _ in range(count):
                socks.append(await self.device.connect_reverse(name))
        socks[0][1].write(encode_device_name(self.name))
        return socks

    async def _serve(self, opts: dict[str, str]) -> None:
        socks = await self._open_sockets(opts)  # video, [audio], [control]
        video = socks.pop(0)[1]
        self._video = video
        tasks = []
        if _wants(opts, "audio"):
            tasks.append(asyncio.create_task(self._audio_stream(socks.pop(0)[1])))
        if _wants(opts, "control"):
            self._control = socks[0][1]
            tasks.append(asyncio.create_task(self._control_loop(socks[0][0])))
        try:
            await self._stream(video, opts)
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _audio_stream(self, audio: asyncio.StreamWriter) -> None:
        """Opus like AudioEncoder: codec id, the OpusHead as a config packet, 20 ms packets.
        Before Android 11 there is no audio capture: the stream is disabled with code 0."""
        if self.android_sdk < 30:
            audio.write(b"\x00\x00\x00\x00")
            return
        audio.write(struct.pack(">I", CODEC_OPUS))
        context = av.CodecContext.create("libopus", "w")
        assert isinstance(context, AudioCodecContext)
        context.sample_rate = 48000
        context.layout = "stereo"
        context.format = "s16"
        context.bit_rate = 64000
        context.open()
        head = bytes(context.extradata or b"")
        audio.write(encode_frame_header(len(head), self.version, config=True) + head)
        start = time.monotonic()
        tone = (np.sin(np.arange(960) * 2 * np.pi * 440 / 48000) * 8000).astype(np.int16)
        stereo = np.repeat(tone, 2).reshape(1, -1)
        index = 0
        while True:
            frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
            frame.sample_rate = 48000
            frame.pts = index * 960
            for packet in context.encode(frame):
                pts_us = int(packet.pts or 0) * 1_000_000 // 48000
                data = bytes(packet)
                audio.write(encode_frame_header(len(data), self.version, pts=pts_us) + data)
                self.audio_packets_sent += 1
            await audio.drain()
            index += 1
            await asyncio.sleep(max(0.0, start + index * 0.02 - time.monotonic()))

    async def _stream(self, video: asyncio.StreamWriter, opts: dict[str, str]) -> None:
        video.write(struct.pack(">I", self.codec_id))
        bitrate = int(opts.get("video_bit_rate", "2000000"))
        first = True
        self.running.set()
        while not self._stop.is_set():
            width, height = self._video_size()
            if first and not self.version.has_session_packets:
                video.write(struct.pack(">II", width, height))
            if self.version.has_session_packets:
                video.write(encode_session(Session(width, height)))
            first = False
            self.sessions_sent += 1
            self._reset.clear()
            encoder = create_encoder(EncoderConfig("h264", width, height, self.fps, bitrate))
            try:
                await self._capture_session(video, encoder, width, height)
            finally:
                await self._in_encoder_thread(encoder.close)

    async def _capture_session(
        self, video: asyncio.StreamWriter, encoder: VideoEncoder, width: int, height: int
    ) -> None:
        start = time.monotonic()
        index = 0
        period = 1.0 / self.fps
        while not self._stop.is_set() and not self._reset.is_set():
            if self.break_video is not None:
                video.write(self.break_video)
                await video.drain()
                self.break_video = None
                video.close()
                self._stop.set()
                return
            frame = RawFrame(make_picture(width, height, index), "yuv420p", time.monotonic())
            pts_us = int((time.monotonic() - start) * 1e6)
            packets = await self._in_encoder_thread(encoder.encode, frame, index, index == 0)
            for packet in packets:
                data = packet.data
                if packet.keyframe:
                    config, data = annexb.split_parameter_sets(data)
                    if index == 0 and config:
                        video.write(
                            encode_frame_header(len(config), self.version, config=True) + config
                        )
                video.write(
                    encode_frame_header(
                        len(data), self.version, pts=pts_us, keyframe=packet.keyframe
                    )
                    + data
                )
                self.frames_sent += 1
            await video.drain()
            index += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._reset.wait(), max(0.0, start + index * period - time.monotonic())
                )

    async def _control_loop(self, reader: asyncio.StreamReader) -> None:
        buf = bytearray()
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            buf += chunk
            while True:
                try:
                    msg, used = parse_control_message(buf)
                except ValueError:
                    self.die()
                    return
                if msg is None:
                    break
                del buf[:used]
                await self._apply(msg)
                self.received_event.set()

    async def _apply(self, msg: dict[str, object]) -> None:
        kind = msg["type"]
        rec = self.received
        assert isinstance(kind, int)
        rec.messages.append(kind)
        if kind == ControlType.INJECT_TOUCH_EVENT:
            touch = Touch(
                int(msg["action"]), int(msg["pointer_id"]), int(msg["x"]), int(msg["y"]),  # type: ignore[call-overload]
                int(msg["width"]), int(msg["height"]), float(msg["pressure"]),  # type: ignore[arg-type,call-overload]
            )  # fmt: skip
            # Like the real server: a touch meant for another picture size is ignored.
            (
                rec.touches
                if (touch.width, touch.height) == self._video_size()
                else rec.dropped_touches
            ).append(touch)
        elif kind == ControlType.INJECT_KEYCODE:
            rec.keys.append((int(msg["action"]), int(msg["keycode"]), int(msg["meta"])))  # type: ignore[call-overload]
        elif kind == ControlType.INJECT_TEXT:
            rec.texts.append(str(msg["text"]))
        elif kind == ControlType.SET_CLIPBOARD:
            seq = int(msg["sequence"])  # type: ignore[call-overload]
            rec.clipboard_sets.append((seq, str(msg["text"]), bool(msg["paste"])))
            self.clipboard = str(msg["text"])
            if seq and self._control is not None:
                self._control.write(encode_device_message(AckClipboardMessage(seq)))
                await self._control.drain()
        elif kind == ControlType.RESET_VIDEO:
            rec.resets += 1
            self._reset.set()
        elif kind == ControlType.ROTATE_DEVICE:
            rec.rotations += 1
            self.rotate()

    def _video_size(self) -> tuple[int, int]:
        width, height = self.size
        max_size = int(self.options.get("max_size", "0") or 0)
        if max_size and max(width, height) > max_size:
            scale = max_size / max(width, height)
            width, height = int(width * scale) & ~7, int(height * scale) & ~7
        return width, height


def add_phone(
    adb: FakeAdbServer, jar_dir: Path, serial: str, *, version: str = "3.3.4", **kwargs: object
) -> tuple[FakeScrcpyDevice, dict[str, object]]:
    """A fake phone on `adb` and the `GuestSpec.options` that reach it (jar written to jar_dir)."""
    device = adb.add_device(FakeDevice(serial))
    phone = FakeScrcpyDevice(device, version=version, **kwargs)  # type: ignore[arg-type]
    jar = jar_dir / f"scrcpy-server-{version}"
    jar.write_bytes(fake_server_jar(version))
    options: dict[str, object] = {
        "serial": serial,
        "adb": adb.address,
        "server_jar": str(jar),
        "server_version": version,
        "retry_initial_s": 0.1,
        "retry_max_s": 0.4,
        "connect_timeout": 5.0,
    }
    return phone, options
