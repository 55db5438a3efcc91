"""One QEMU process: its command line, run directory, QMP connection and clean end.

Why a class of its own: the guest (capture, input, restarts) should never deal with fork/exec,
sockets appearing, or reaping. Everything a process owns lives in one per-instance run
directory (QMP and VNC unix sockets, serial log, QEMU's stderr), removed on stop. QEMU gets
`PR_SET_PDEATHSIG` so it cannot outlive a crashed edge, and `stop` always reaps it: no zombies,
no orphans. Only 127.0.0.1/unix sockets are used: no `-netdev`, VNC on a unix socket.

A binary outside /usr (QEMU unpacked from Debian packages without installing them, e.g. the
bookworm-backports QEMU that scripts/install-system-deps.sh puts in .cache/qemu-backports)
still looks for firmware and modules under its compiled-in /usr paths, where the system
QEMU's (older) files live. So for such a binary, `-L` names its own share/qemu and
share/seabios first and `QEMU_MODULE_DIR` its own module folder: installed side by side,
neither QEMU loads the other's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cloudphone.vm.guest import GuestError
from qemu.qmp import QMPClient

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
#: The Debian package that ships qemu-system-<arch>, for the "not found" message.
_QEMU_PACKAGES = {"x86_64": "qemu-system-x86", "aarch64": "qemu-system-arm"}
#: aarch64 under TCG: `max` with QEMU's cheap implementation-defined pointer authentication.
#: The architected QARMA5 that plain `max` emulates made the recipe guest boot in ~14 s
#: instead of ~5 s on the 2-core test machine (TCG runs it on every function return).
AARCH64_TCG_CPU = "max,pauth-impdef=on"


@dataclass(frozen=True, slots=True)
class QemuConfig:
    """What to boot and how. `kernel`+`initrd` (direct boot) and/or `disk` (a drive image)."""

    kernel: Path | None = None
    initrd: Path | None = None
    disk: Path | None = None
    append: str = ""
    arch: str = "x86_64"
    memory_mb: int = 256
    cpus: int = 1
    width: int = 720
    height: int = 1280
    accel: str = "tcg"  # "tcg" or "kvm"; KVM only where a probe boot proved it works
    # "vnc" (RFB on a unix socket + keepalive: the lowest input->frame latency measured here)
    # or "dbus" (-display dbus,p2p=yes: QEMU pushes damage, no keepalive traffic when idle)
    capture: str = "vnc"
    binary: str | None = None  # default: qemu-system-<arch> on PATH
    # touch device: True virtio-multitouch-pci (QEMU >= 8.1), False virtio-tablet-pci (one
    # pointer), None: QemuGuest probes the binary (`probe_multitouch`) before booting
    multitouch: bool | None = None
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def binary_name(self) -> str:
        return self.binary or f"qemu-system-{self.arch}"


def _unpacked_prefix(binary: str) -> Path | None:
    """The /usr-like tree an unpacked (not installed) QEMU came from, or None for /usr."""
    prefix = Path(binary).resolve().parent.parent
    if prefix == Path("/usr") or not (prefix / "share" / "qemu").is_dir():
        return None
    return prefix


def private_paths(binary: str) -> tuple[list[str], dict[str, str]]:
    """Extra arguments and environment that keep an unpacked QEMU on its own files."""
    prefix = _unpacked_prefix(binary)
    if prefix is None:
        return [], {}
    args: list[str] = []
    for data in (prefix / "share" / "qemu", prefix / "share" / "seabios"):
        if data.is_dir():
            args += ["-L", str(data)]
    env: dict[str, str] = {}
    modules = next(iter(sorted((prefix / "lib").glob("*/qemu"))), None)
    if modules is not None:
        env["QEMU_MODULE_DIR"] = str(modules)
    return args, env


def resolve_binary(config: QemuConfig) -> str:
    """The absolute path of the configured QEMU; GuestError when there is none."""
    binary = shutil.which(config.binary_name())
    if binary is None:
        package = _QEMU_PACKAGES.get(config.arch, "the qemu-system-* package for it")
        raise GuestError(f"{config.binary_name()} not found: apt-get install {package}")
    return os.path.abspath(binary)


_multitouch_probes: dict[str, bool] = {}


async def probe_multitouch(config: QemuConfig, timeout: float = 15.0) -> bool:
    """Whether the configured binary has `virtio-multitouch-pci` (QEMU >= 8.1), asked of the
    binary itself (`-device virtio-multitouch-pci,help`), never guessed from a version string;
    cached per binary. A failing probe counts as "no": single touch still works."""
    binary = resolve_binary(config)
    cached = _multitouch_probes.get(binary)
    if cached is not None:
        return cached
    extra, env = private_paths(binary)
    argv = [binary, *extra, "-machine", "none", "-nodefaults", "-display", "none"]
    argv += ["-device", "virtio-multitouch-pci,help"]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env},
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()  # the probe process we just started
            await proc.wait()
            raise
    except (OSError, TimeoutError) as exc:
        log.warning("%s: multi-touch probe failed (%r); assuming single touch", binary, exc)
        return False
    # QEMU 7.2 says "Device 'virtio-multitouch-pci' not found" on stderr and still exits 0
    found = out.decode(errors="replace").lstrip().startswith("virtio-multitouch-pci options")
    log.info(
        "%s: %s",
        binary,
        "multi-touch (virtio-multitouch-pci)"
        if found
        else f"single touch ({err.decode(errors='replace').strip()[:120] or 'no device'})",
    )
    _multitouch_probes[binary] = found
    return found


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class QemuProcess:
    """Spawns QEMU with QMP + VNC on unix sockets in `run_dir`; `stop` ends and reaps it."""

    def __init__(self, config: QemuConfig, run_dir: Path | None = None) -> None:
        self.config = config
        self._own_run_dir = run_dir is None
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="cloudphone-qemu-"))
        self.qmp_path = self.run_dir / "qmp.sock"
        self.vnc_path = self.run_dir / "vnc.sock"
        self.serial_log = self.run_dir / "serial.log"
        self.stderr_log = self.run_dir / "qemu.log"
        self.qmp: QMPClient | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def argv(self) -> list[str]:
        """The full command line (also handy to print for debugging a guest by hand)."""
        c = self.config
        binary = resolve_binary(c)
        for label, path in (("kernel", c.kernel), ("initrd", c.initrd), ("disk", c.disk)):
            if path is not None and not Path(path).is_file():
                raise GuestError(f"qemu {label} image {path} does not exist (make qemu-image?)")
        if c.capture not in ("vnc", "dbus"):
            raise GuestError(f"unknown qemu capture path {c.capture!r}: vnc or dbus")
        if c.kernel is None and c.disk is None:
            raise GuestError("qemu guest needs a kernel or a disk image")
        args = [binary, *private_paths(binary)[0]]
        args += ["-accel", c.accel, "-m", str(c.memory_mb), "-smp", str(c.cpus)]
        args += ["-nodefaults", "-no-user-config", "-no-reboot"]
        args += ["-display", "dbus,p2p=yes" if c.capture == "dbus" else "none"]
        if c.arch == "aarch64":
            args += ["-machine", "virt", "-cpu", AARCH64_TCG_CPU if c.accel == "tcg" else "host"]
            display = ["-device", f"virtio-gpu-pci,xres={c.width},yres={c.height}"]
        elif c.arch == "x86_64":
            display = ["-device", f"VGA,xres={c.width},yres={c.height},vgamem_mb=32"]
        else:
            raise GuestError(f"unsupported qemu arch {c.arch!r}: x86_64 or aarch64")
        args += display
        touch = "virtio-multitouch-pci" if c.multitouch else "virtio-tablet-pci"
        args += ["-device", touch, "-device", "virtio-keyboard-pci"]
        if c.kernel is not None:
            args += ["-kernel", str(c.kernel)]
            # bochs (VGA) and virtio-gpu both name their one connector Virtual-1 (checked in
            # the guests' /sys/class/drm); this sizes the console before the phone program runs
            append = f"{c.append} video=Virtual-1:{c.width}x{c.height}".strip()
            args += ["-append", append]
        if c.initrd is not None:
            args += ["-initrd", str(c.initrd)]
        if c.disk is not None:
            args += ["-drive", f"file={c.disk},if=virtio,format=raw,snapshot=on"]
        args += ["-vnc", f"unix:{self.vnc_path}"]
        args += ["-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        args += ["-serial", f"file:{self.serial_log}"]
        args += list(c.extra_args)
        return args

    async def start(self, qmp_within: float = 10.0) -> None:
        """Spawn QEMU and connect QMP. Raises GuestError (with QEMU's words) when it fails."""
        if self.running:
            raise GuestError("qemu is already running")
        argv = self.argv()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.qmp_path, self.vnc_path):
            path.unlink(missing_ok=True)
        log.info("starting %s", " ".join(argv))
        env = private_paths(argv[0])[1]
        err = os.open(self.stderr_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                preexec_fn=_set_pdeathsig,
                start_new_session=True,
                env={**os.environ, **env} if env else None,
            )
        finally:
            os.close(err)
        self.started_at = time.monotonic()
        deadline = self.started_at + qmp_within
        qmp = QMPClient(f"cloudphone-{self._proc.pid}")
        while True:
            if self._proc.returncode is not None:
                raise GuestError(f"qemu exited with {self._proc.returncode}: {self.error_tail()}")
            if self.qmp_path.exists():
                try:
                    await qmp.connect(str(self.qmp_path))
                    break
                except Exception as exc:  # socket appeared but is not listening yet
                    log.debug("qmp not ready: %s", exc)
            if time.monotonic() > deadline:
                await self.stop()
                raise GuestError(f"qemu did not open QMP within {qmp_within:.0f} s")
            await asyncio.sleep(0.02)
        self.qmp = qmp

    def error_tail(self, limit: int = 600) -> str:
        try:
            return self.stderr_log.read_text(errors="replace").strip()[-limit:] or "(no output)"
        except OSError:
            return "(no output)"

    def serial_tail(self, limit: int = 2000) -> str:
        try:
            return self.serial_log.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    async def wait(self) -> int:
        """Wait for QEMU to exit; its exit status (negative: killed by that signal)."""
        assert self._proc is not None
        return await self._proc.wait()

    async def stop(self, grace: float = 3.0) -> int | None:
        """Ask QEMU to quit over QMP, then SIGTERM, then SIGKILL; always reap it."""
        proc = self._proc
        qmp, self.qmp = self.qmp, None
        if proc is not None and proc.returncode is None and qmp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(qmp.execute("quit"), timeout=1.0)
        if qmp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(qmp.disconnect(), timeout=1.0)
        code: int | None = None
        if proc is not None:
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None and proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, sig)  # by PID: only the process we started
                try:
                    code = await asyncio.wait_for(proc.wait(), timeout=grace)
                    break
                except TimeoutError:
                    continue
        if self._own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            for path in (self.qmp_path, self.vnc_path):
                path.unlink(missing_ok=True)
        return code
