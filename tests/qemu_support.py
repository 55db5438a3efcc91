"""Helpers shared by the QEMU tests: the skip rules, the recipe image, a frame-collecting sink,
and waiting for a viewer's decoded frame that shows an input."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cloudphone.edge.client import PhoneClient, ReceivedFrame
from cloudphone.vm.guest import EncodedChunk, RawFrame
from cloudphone.vm.qemu.image import ARCHES, GuestImage, ImageError, cached_image, ensure_image
from cloudphone.vm.qemu.process import QemuConfig

QEMU_BINARY = "qemu-system-x86_64"
QEMU_AARCH64_BINARY = "qemu-system-aarch64"

requires_qemu = pytest.mark.skipif(
    shutil.which(QEMU_BINARY) is None,
    reason=f"!! {QEMU_BINARY} is not installed (apt-get install qemu-system-x86): "
    "QEMU guest tests cannot run",
)
requires_qemu_aarch64 = pytest.mark.skipif(
    shutil.which(QEMU_AARCH64_BINARY) is None,
    reason=f"!! {QEMU_AARCH64_BINARY} is not installed (apt-get install qemu-system-arm): "
    "aarch64 guest tests cannot run",
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


def _cannot_build(arch: str) -> str | None:
    """Why `arch`'s image cannot exist on this machine (its toolchain or apt source is not
    here: scripts/install-system-deps.sh not run as root), or None when it can be built."""
    recipe = ARCHES[arch]
    if recipe.native:
        return None
    if shutil.which(recipe.compiler) is None:
        return f"{recipe.compiler} is not installed (apt-get install gcc-{recipe.triplet})"
    dpkg = shutil.which("dpkg")
    if dpkg is None:
        return "this is not a Debian machine (no dpkg): apt cannot fetch the guest kernel"
    known = subprocess.run([dpkg, "--print-foreign-architectures"], capture_output=True, text=True)
    if recipe.deb_arch not in known.stdout.split():
        return f"dpkg has no {recipe.deb_arch} architecture, so apt cannot fetch the guest kernel"
    return None


def recipe_image(arch: str = "x86_64") -> GuestImage:
    """The cached recipe image, built now if needed. Fails loudly when it could be built but
    the build fails (QEMU is here, so it must work); skips only when a foreign architecture's
    toolchain or apt source is missing (the install script was not run as root)."""
    image = cached_image(arch=arch)
    if image is not None:
        return image
    why = _cannot_build(arch)
    if why is not None:
        pytest.skip(f"!! the {arch} recipe image cannot be built here: {why}")
    try:
        return ensure_image(arch=arch)
    except ImageError as exc:
        pytest.fail(f"the {arch} QEMU recipe image cannot be built: {exc}")


def recipe_config(image: GuestImage, **overrides: object) -> QemuConfig:
    fields: dict[str, object] = {
        "kernel": image.kernel,
        "initrd": image.initrd,
        "append": image.cmdline,
        "arch": image.arch,
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


def stamped(seq: int) -> Callable[[ReceivedFrame], bool]:
    """A decoded frame whose latency stamp says input `seq` (or a later one) is drawn."""
    return lambda f: f.stamp is not None and f.stamp.input_seq >= seq


async def until_frame(
    client: PhoneClient, seq: int, check: Callable[[ReceivedFrame], bool], what: str
) -> ReceivedFrame:
    """The first decoded frame at or after input `seq` that passes `check`. Waiting (rather
    than judging the first stamped frame) rides out a frame damaged by a lost packet on a busy
    machine until the keyframe that follows, and a dot that lands one display refresh after
    the stamp (VGA dirty tracking)."""
    try:
        return await client.wait_for_frame(lambda f: stamped(seq)(f) and check(f), 10.0)
    except TimeoutError:
        raise AssertionError(f"no decoded frame showed {what}") from None


def differs(a: np.ndarray, b: np.ndarray) -> bool:
    """Two luma regions differ by more than codec noise."""
    return bool(abs(a.astype(int) - b.astype(int)).mean() > 1.0)


async def tap_shows_dot(client: PhoneClient, x: float, y: float) -> ReceivedFrame:
    """Tap at (x, y) (x < 0.5) and wait for the recipe guest's bright dot there, with the
    mirrored place on the dark touch area still dark."""

    def dot(f: ReceivedFrame) -> bool:
        row = int(y * f.height)
        return bool(f.luma[row, int(x * f.width)] > 80 and f.luma[row, int((1 - x) * f.width)] < 60)

    return await until_frame(client, client.tap(x, y), dot, "a dot where the tap landed")
