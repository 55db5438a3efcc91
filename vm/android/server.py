"""One run of scrcpy-server on a device: push, start, connect its sockets, pump them.

scrcpy's own client does the same steps (doc/develop.md): push the jar to
/data/local/tmp, open a tunnel, start `app_process` with the exact version and key=value
options, then accept/connect the video and control sockets in that order, read the dummy byte
(forward tunnels) and the 64-byte device name. A `ScrcpyConnection` lives as long as that
server process; the guest makes a new one to reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

from cloudphone.vm.android import control
from cloudphone.vm.android.adb import AdbClient, AdbError, AdbStream
from cloudphone.vm.android.options import AndroidOptions
from cloudphone.vm.android.scrcpy_protocol import (
    DEVICE_NAME_FIELD_LENGTH,
    DEVICE_SERVER_PATH,
    AckClipboardMessage,
    ClipboardMessage,
    ProtocolError,
    ServerOptions,
    Session,
    parse_device_message,
    parse_device_name,
)
from cloudphone.vm.android.stream import (
    AudioDemuxer,
    AudioPacket,
    StreamDisabled,
    StreamEnded,
    VideoDemuxer,
    VideoPacket,
)
from cloudphone.vm.guest import GuestError

log = logging.getLogger(__name__)

SessionCallback = Callable[[Session], None]
PacketCallback = Callable[[VideoPacket], None]
AudioCallback = Callable[[AudioPacket], None]
ClipboardCallback = Callable[[str], None]


class ScrcpyConnection:
    """A started scrcpy-server and its sockets. `open()`, then `run()` until it ends."""

    def __init__(
        self,
        adb: AdbClient,
        options: AndroidOptions,
        *,
        on_session: SessionCallback,
        on_packet: PacketCallback,
        on_clipboard: ClipboardCallback,
        on_audio: AudioCallback | None = None,
    ) -> None:
        self.adb = adb
        self.options = options
        self.version = options.version
        self.server = ServerOptions(
            version=self.version,
            scid=random.getrandbits(31),
            max_size=options.max_size,
            video_bit_rate=options.bit_rate,
            max_fps=options.max_fps,
            control=options.control,
            audio=options.audio,
            tunnel_forward=options.tunnel == "forward",
        )
        self.device_name = ""
        self._on_session = on_session
        self._on_packet = on_packet
        self._on_clipboard = on_clipboard
        self._on_audio = on_audio
        self.audio_codec: str | None = None  # "opus" once the device streams audio
        self._audio: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._audio_demuxer: AudioDemuxer | None = None
        self._shell: AdbStream | None = None
        self._shell_task: asyncio.Task[None] | None = None
        self._video: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._control: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._demuxer: VideoDemuxer | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._next_seq = 1
        self._closed = False
        self._shell_output: list[str] = []

    # ---------------------------------------------------------------- start-up

    async def open(self) -> None:
        """Push, start and connect. Raises GuestError (config/device) or ProtocolError."""
        opts = self.options
        try:
            jar = await asyncio.to_thread(Path(opts.server_jar).read_bytes)
        except OSError as exc:
            raise GuestError(f"cannot read scrcpy-server jar {opts.server_jar!r}: {exc}") from exc
        try:
            await self.adb.push(opts.serial, jar, DEVICE_SERVER_PATH)
            if self.server.tunnel_forward:
                await self._start_forward()
            else:
                await self._start_reverse()
            assert self._video is not None
            first = self._video[0]
            name = await asyncio.wait_for(
                first.readexactly(DEVICE_NAME_FIELD_LENGTH), opts.connect_timeout
            )
            self.device_name = parse_device_name(name)
            self._demuxer = VideoDemuxer(self._video[0], self.version)
            codec = await asyncio.wait_for(self._demuxer.read_codec(), opts.connect_timeout)
            if self._audio is not None:
                await asyncio.wait_for(self._open_audio(self._audio[0]), opts.connect_timeout)
        except StreamDisabled as exc:
            await self.close()
            raise GuestError(f"{opts.serial}: {exc}{self._why()}") from None
        except asyncio.IncompleteReadError:
            await self.close()
            raise GuestError(
                f"{opts.serial}: scrcpy-server closed the connection{self._why()}"
            ) from None
        except (AdbError, OSError, TimeoutError) as exc:
            await self.close()
            raise GuestError(
                f"{opts.serial}: cannot start scrcpy-server: {exc}{self._why()}"
            ) from exc
        except BaseException:
            await self.close()
            raise
        if codec != "h264":
            await self.close()
            raise GuestError(f"{opts.serial}: device sends {codec}; passthrough needs h264")
        log.info(
            "%s: scrcpy-server %s streaming from %r", opts.serial, self.version, self.device_name
        )

    def _why(self) -> str:
        text = " ".join(line.strip() for line in self._shell_output if line.strip())
        return f" ({text})" if text else ""

    async def _start_shell(self) -> None:
        self._shell = await self.adb.open_shell(self.options.serial, self.server.command())
        self._shell_task = asyncio.create_task(self._watch_shell(self._shell))

    async def _watch_shell(self, shell: AdbStream) -> None:
        """The server's stdout/stderr: logged, kept for error messages; EOF = process ended."""
        while line := await shell.reader.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self._shell_output = [*self._shell_output[-9:], text]
            log.debug("%s scrcpy-server: %s", self.options.serial, text)

    async def _start_forward(self) -> None:
        await self._start_shell()
        name = self.server.socket_name
        serial = self.options.serial
        deadline = time.monotonic() + self.options.connect_timeout
        while True:  # the server listens only once app_process is up
            try:
                video = await self.adb.open_local_abstract(serial, name)
                break
            except AdbError:
                shell_ended = self._shell_task is not None and self._shell_task.done()
                if shell_ended or time.monotonic() > deadline:
                    await asyncio.sleep(0.05)  # let the shell's last words arrive
                    raise
                await asyncio.sleep(0.05)
        self._video = (video.reader, video.writer)
        dummy = await asyncio.wait_for(video.reader.readexactly(1), self.options.connect_timeout)
        if dummy != b"\x00":
            raise ProtocolError(f"expected the dummy byte 0, got {dummy!r}")
        if self.server.audio:  # sockets are opened in scrcpy's order: video, audio, control
            audio = await self.adb.open_local_abstract(serial, name)
            self._audio = (audio.reader, audio.writer)
        if self.server.control:
            ctl = await self.adb.open_local_abstract(serial, name)
            self._control = (ctl.reader, ctl.writer)

    async def _start_reverse(self) -> None:
        accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

        async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await accepted.put((r, w))

        listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        remote = f"localabstract:{self.server.socket_name}"
        serial = self.options.serial
        try:
            await self.adb.reverse(serial, remote, f"tcp:{port}")
            await self._start_shell()
            timeout = self.options.connect_timeout
            self._video = await asyncio.wait_for(accepted.get(), timeout)
            if self.server.audio:
                self._audio = await asyncio.wait_for(accepted.get(), timeout)
            if self.server.control:
                self._control = await asyncio.wait_for(accepted.get(), timeout)
        finally:
            listener.close()
            with contextlib.suppress(AdbError):
                await self.adb.kill_reverse(serial, remote)

    # ---------------------------------------------------------------- running

    async def run(self) -> None:
        """Pump the sockets until the server ends (StreamEnded) or misbehaves (ProtocolError)."""
        assert self._demuxer is not None
        video = asyncio.create_task(self._video_loop(self._demuxer))
        assert self._shell_task is not None
        tasks = [video, self._shell_task]
        if self._control is not None:
            tasks.append(asyncio.create_task(self._device_messages(self._control[0])))
        if self._audio_demuxer is not None:
            tasks.append(asyncio.create_task(self._audio_loop(self._audio_demuxer)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if not video.done():
                # The shell or control socket ended first; the video socket says why (EOF or
                # garbage) a moment later. Prefer its verdict.
                await asyncio.wait([video], timeout=0.5)
            for task in (video, *tasks[1:]):
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            raise StreamEnded("scrcpy-server stopped")
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def _video_loop(self, demuxer: VideoDemuxer) -> None:
        while True:
            item = await demuxer.next()
            if isinstance(item, Session):
                self._on_session(item)
            else:
                self._on_packet(item)

    async def _open_audio(self, reader: asyncio.StreamReader) -> None:
        demuxer = AudioDemuxer(reader, self.version)
        try:
            codec = await demuxer.read_codec()
        except StreamDisabled as exc:
            # Android < 11 cannot capture audio: video goes on without it.
            log.info("%s: no audio: %s", self.options.serial, exc)
            return
        self._audio_demuxer = demuxer
        if codec == "opus":
            self.audio_codec = codec
        else:
            log.warning("%s: audio in %s cannot go to WebRTC; ignored", self.options.serial, codec)

    async def _audio_loop(self, demuxer: AudioDemuxer) -> None:
        while True:
            packet = await demuxer.next()
            if self._on_audio is not None and self.audio_codec is not None:
                self._on_audio(packet)

    async def _device_messages(self, reader: asyncio.StreamReader) -> None:
        buf = bytearray()
        while chunk := await reader.read(65536):
            buf += chunk
            while True:
                msg, used = parse_device_message(buf)
                if msg is None:
                    break
                del buf[:used]
                if isinstance(msg, ClipboardMessage):
                    self._on_clipboard(msg.text)
                elif isinstance(msg, AckClipboardMessage):
                    fut = self._acks.pop(msg.sequence, None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
        raise StreamEnded("control socket closed")

    # ---------------------------------------------------------------- control

    @property
    def can_control(self) -> bool:
        return self._control is not None and not self._control[1].is_closing()

    def send(self, message: bytes) -> None:
        """Queue one control message (non-blocking; asyncio buffers it)."""
        if self._control is None or self._control[1].is_closing():
            raise GuestError("no control socket")
        self._control[1].write(message)

    async def set_clipboard(self, text: str, paste: bool = False) -> None:
        """SET_CLIPBOARD and wait for the device's ACK_CLIPBOARD (raises TimeoutError)."""
        seq = self._next_seq
        self._next_seq += 1
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[seq] = fut
        try:
            self.send(control.set_clipboard(seq, text, paste))
            await asyncio.wait_for(fut, self.options.clipboard_ack_timeout_s)
        finally:
            self._acks.pop(seq, None)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for pair in (self._video, self._audio, self._control):
            if pair is not None:
                pair[1].close()
        if self._shell is not None:
            await self._shell.close()
        task = self._shell_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
