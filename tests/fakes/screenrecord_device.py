"""A fake device for the slow path: `wm size`, `dumpsys input`, `screenrecord`, an `input` shell.

`screenrecord --output-format=h264 ... -` writes MediaCodec's output unframed to stdout:
SPS/PPS once at the start, then pictures; it stops at `--time-limit`. The fake does the same
with our libx264 encoder, and records every `input` command its persistent shell receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from concurrent.futures import ThreadPoolExecutor

from cloudphone.codecs import EncoderConfig, create_encoder
from cloudphone.vm.android import annexb
from cloudphone.vm.guest import RawFrame

from tests.fakes.adb_server import FakeDevice
from tests.fakes.scrcpy_device import make_picture


class FakeScreenrecordDevice:
    def __init__(
        self, device: FakeDevice, *, width: int = 320, height: int = 640, fps: int = 20
    ) -> None:
        self.device = device
        self.natural = (width, height)
        self.fps = fps
        self.orientation = 0
        self.inputs: list[str] = []
        self.recordings: list[str] = []
        self.input_event = asyncio.Event()
        self._encoder_thread = ThreadPoolExecutor(1, thread_name_prefix="fake-screenrecord")
        device.on_shell("wm size", self._wm_size)
        device.on_shell("dumpsys input", self._dumpsys_input)
        device.on_shell("screenrecord", self._screenrecord)
        device.on_shell("sh", self._sh)

    async def _wm_size(self, cmd: str, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(f"Physical size: {self.natural[0]}x{self.natural[1]}\n".encode())
        w.close()

    async def _dumpsys_input(
        self, cmd: str, r: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        w.write(
            f"INPUT MANAGER (dumpsys input)\n    SurfaceOrientation: {self.orientation}\n".encode()
        )
        w.close()

    async def _sh(self, cmd: str, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while line := await r.readline():
            self.inputs.append(line.decode().strip())
            self.input_event.set()
        w.close()

    async def _screenrecord(
        self, cmd: str, r: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        self.recordings.append(cmd)
        m = re.search(r"--size (\d+)x(\d+)", cmd)
        limit = re.search(r"--time-limit (\d+)", cmd)
        assert m and limit and "--output-format=h264" in cmd and cmd.endswith(" -")
        width, height = int(m.group(1)), int(m.group(2))
        encoder = create_encoder(EncoderConfig("h264", width, height, self.fps))
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        index = 0
        try:
            while time.monotonic() - start < int(limit.group(1)):
                frame = RawFrame(make_picture(width, height, index), "yuv420p", time.monotonic())
                packets = await loop.run_in_executor(
                    self._encoder_thread, encoder.encode, frame, index, index == 0
                )
                for packet in packets:
                    data = packet.data
                    if index and packet.keyframe:  # MediaCodec: parameter sets only once
                        _, data = annexb.split_parameter_sets(data)
                    w.write(data)
                await w.drain()
                index += 1
                await asyncio.sleep(max(0.0, start + index / self.fps - time.monotonic()))
        except (ConnectionError, OSError):
            pass
        finally:
            await loop.run_in_executor(self._encoder_thread, encoder.close)
            with contextlib.suppress(Exception):
                w.close()
