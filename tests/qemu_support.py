"""Helpers shared by the QEMU tests: the skip rule, the recipe image, a frame-collecting sink."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cloudphone.vm.guest import EncodedChunk, RawFrame
from cloudphone.vm.qemu.image import GuestImage, ImageError, ensure_image
from cloudphone.vm.qemu.process import QemuConfig

QEMU_BINARY = "qemu-system-x86_64"

requires_qemu = pytest.mark.skipif(
    shutil.which(QEMU_BINARY) is None,
    reason=f"!! {QEMU_BINARY} is not installed (apt-get install qemu-system-x86): "
    "QEMU guest tests cannot run",
)

#: QEMU >= 8.1 from bookworm-backports, unpacked by scripts/install-system-deps.sh (not on PATH,
#: so the system's 7.2 stays the default and the single-touch path keeps its tests).
BACKPORTS_QEMU = (
    Path(
        os.environ.get("CLOUDPHONE_QEMU_BACKPORTS_DIR")
        or Path(__file__).resolve().parents[1] / ".cache" / "qemu-backports"
    )
    / "usr/bin/qemu-system-x86_64"
)

requires_multitouch_qemu = pytest.mark.skipif(
    not BACKPORTS_QEMU.is_file(),
    reason=f"!! {BACKPORTS_QEMU} is missing (run scripts/install-system-deps.sh as root on "
    "Debian 12): the multi-touch QEMU tests cannot run",
)


def recipe_image() -> GuestImage:
    """The cached recipe image, built now if needed (fails loudly: QEMU is here, so it must)."""
    try:
        return ensure_image()
    except ImageError as exc:
        pytest.fail(f"the QEMU recipe image cannot be built: {exc}")


def recipe_config(image: GuestImage, **overrides: object) -> QemuConfig:
    fields: dict[str, object] = {
        "kernel": image.kernel,
        "initrd": image.initrd,
        "append": image.cmdline,
    }
    fields.update(overrides)
    return QemuConfig(**fields)


class FrameCollector:
    """A FrameSink that keeps recent frames and lets a test wait for one that matches."""

    def __init__(self, keep: int = 64) -> None:
        self.frames: list[RawFrame] = []
        self.count = 0
        self._keep = keep

    def push_frame(self, frame: RawFrame) -> None:
        self.count += 1
        self.frames.append(frame)
        if len(self.frames) > self._keep:
            del self.frames[: -self._keep]

    def push_encoded(self, chunk: EncodedChunk) -> None:  # pragma: no cover - raw guests only
        raise AssertionError("a QEMU guest pushes raw frames")

    @property
    def last(self) -> RawFrame:
        assert self.frames, "no frame yet"
        return self.frames[-1]

    async def wait_for(
        self, predicate: Callable[[RawFrame], bool], within: float = 5.0, what: str = "frame"
    ) -> RawFrame:
        seen = self.count
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            new = min(len(self.frames), self.count - seen)
            fresh = self.frames[-new:] if new > 0 else []
            for frame in fresh:
                if predicate(frame):
                    return frame
            seen = self.count
            await asyncio.sleep(0.005)
        raise AssertionError(f"no {what} within {within} s")


def pid_alive(pid: int) -> bool:
    """True while a process with that pid exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status
