"""The recipe guest image: Debian's generic kernel + a busybox initramfs running `phone.c`.

Why build it here instead of shipping one: no binaries live in git, and everything comes from
Debian packages by name (`linux-image-*` via `apt-get download`, `busybox-static`, the machine's
gcc and the kernel UAPI headers of `libdrm-dev`). The result is cached outside git (by default
`<repo>/.cache/qemu-image/`, or `$CLOUDPHONE_QEMU_IMAGE_DIR`) and rebuilt only when the recipe's
inputs change. The initramfs is written as a `newc` cpio by Python itself, so no cpio tool is
needed.

Run it with `make qemu-image` or `python -m cloudphone.vm.qemu.image`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
PHONE_SOURCE = HERE / "phone.c"
RECIPE_VERSION = 1
BUSYBOX = Path("/bin/busybox")
DRM_HEADERS = Path("/usr/include/libdrm")
FONT_PATHS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"),
)
#: Kernel modules the guest needs; their dependencies are found from each module's modinfo.
MODULES = ("virtio_pci", "virtio_input", "evdev", "bochs")
#: The kernel command line the image is made for (QemuProcess appends the display size).
KERNEL_CMDLINE = "console=ttyS0 quiet loglevel=3 panic=-1 vt.global_cursor_default=0"

INIT_SCRIPT = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in $(/bin/busybox cat /modules.order); do /bin/busybox insmod /lib/modules/$m; done
echo "cloudphone-guest: modules loaded"
while true; do
    /phone
    echo "cloudphone-guest: phone exited with $?, restarting"
    /bin/busybox sleep 1
done
"""


class ImageError(RuntimeError):
    """The recipe cannot run here (a tool or package is missing); the message says which."""


@dataclass(frozen=True, slots=True)
class GuestImage:
    """A built image: what QEMU boots."""

    kernel: Path
    initrd: Path
    cmdline: str = KERNEL_CMDLINE


def default_cache_dir() -> Path:
    """`$CLOUDPHONE_QEMU_IMAGE_DIR`, else `.cache/qemu-image` in a checkout, else ~/.cache."""
    env = os.environ.get("CLOUDPHONE_QEMU_IMAGE_DIR")
    if env:
        return Path(env)
    root = HERE.parents[1]
    if (root / "setup.cfg").exists():
        return root / ".cache" / "qemu-image"
    return Path.home() / ".cache" / "cloudphone" / "qemu-image"


def _recipe_hash() -> str:
    h = hashlib.sha256()
    h.update(str(RECIPE_VERSION).encode())
    h.update(PHONE_SOURCE.read_bytes())
    h.update(INIT_SCRIPT.encode())
    h.update(",".join(MODULES).encode())
    return h.hexdigest()[:16]


def cached_image(cache_dir: Path | None = None) -> GuestImage | None:
    """The image if it is built and up to date, else None. Cheap: reads one manifest."""
    cache = cache_dir or default_cache_dir()
    try:
        manifest = json.loads((cache / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("recipe") != _recipe_hash():
        return None
    image = GuestImage(kernel=cache / manifest["kernel"], initrd=cache / manifest["initrd"])
    if not (image.kernel.is_file() and image.initrd.is_file()):
        return None
    return image


def ensure_image(cache_dir: Path | None = None) -> GuestImage:
    """Return the cached image, building it first when missing or stale."""
    cache = cache_dir or default_cache_dir()
    image = cached_image(cache)
    if image is not None:
        return image
    return build_image(cache)


def _run(args: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise ImageError(f"{args[0]} missing: run scripts/install-system-deps.sh") from exc
    except subprocess.CalledProcessError as exc:
        raise ImageError(f"{' '.join(args)} failed: {exc.stderr.strip()[-800:]}") from exc
    return done.stdout


def kernel_package_name() -> str:
    """The versioned package `linux-image-amd64` depends on (e.g. linux-image-6.1.0-56-amd64)."""
    match = None
    for attempt in range(2):
        try:
            out = _run(["apt-cache", "depends", "linux-image-amd64"])
            match = re.search(r"Depends:\s*(linux-image-\S+)", out)
        except ImageError:
            match = None
        if match or attempt or os.geteuid() != 0:
            break
        log.info("apt lists know no kernel yet: apt-get update")
        _run(["apt-get", "update", "-q"])
    if not match:
        raise ImageError("apt-cache knows no linux-image-amd64: run `apt-get update` first")
    return match.group(1)


def _fetch_kernel(cache: Path) -> tuple[Path, Path]:
    """Download and unpack the generic kernel; return (vmlinuz, modules dir) in a scratch tree."""
    scratch = Path(tempfile.mkdtemp(prefix="kernel-", dir=cache))
    package = kernel_package_name()
    log.info("downloading %s", package)
    _run(["apt-get", "download", package], cwd=scratch)
    debs = list(scratch.glob("*.deb"))
    if not debs:
        raise ImageError(f"apt-get download {package} produced no .deb")
    _run(["dpkg-deb", "-x", str(debs[0]), str(scratch / "root")])
    vmlinuz = next((scratch / "root" / "boot").glob("vmlinuz-*"), None)
    moddir = next((scratch / "root" / "lib" / "modules").glob("*"), None)
    if vmlinuz is None or moddir is None:
        raise ImageError(f"{package} has no kernel or modules")
    return vmlinuz, moddir


def module_closure(moddir: Path, wanted: Iterable[str]) -> list[Path]:
    """The .ko files for `wanted` and their dependencies, dependencies first (insmod order)."""
    index = {p.name.removesuffix(".ko").replace("-", "_"): p for p in moddir.rglob("*.ko")}
    builtin = set()
    builtin_file = moddir / "modules.builtin"
    if builtin_file.exists():
        builtin = {
            Path(line).name.removesuffix(".ko").replace("-", "_")
            for line in builtin_file.read_text().split()
        }
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in order or name in builtin:
            return
        if name in trail:
            raise ImageError(f"module dependency cycle: {' -> '.join((*trail, name))}")
        path = index.get(name)
        if path is None:
            raise ImageError(f"kernel has no module {name}")
        match = re.search(rb"\x00depends=([^\x00]*)\x00", path.read_bytes())
        deps = match.group(1).decode().split(",") if match else []
        for dep in filter(None, deps):
            visit(dep.replace("-", "_"), (*trail, name))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return [index[name] for name in order]


def _font_header(path: Path) -> None:
    """Render printable ASCII as 8-bit alpha glyphs (a C header for phone.c)."""
    from PIL import Image, ImageDraw, ImageFont

    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    font_file = next((p for p in FONT_PATHS if p.exists()), None)
    width, height = 16, 30
    if font_file is not None:
        font = ImageFont.truetype(str(font_file), 24)
    else:  # Pillow's built-in font: small but always there
        font = ImageFont.load_default()
        width, height = 8, 14
    first, last = 0x20, 0x7E
    lines = [
        f"#define FONT_W {width}",
        f"#define FONT_H {height}",
        f"#define FONT_FIRST {first}",
        f"#define FONT_COUNT {last - first + 1}",
        "static const unsigned char font_alpha[FONT_COUNT][FONT_H][FONT_W] = {",
    ]
    for code in range(first, last + 1):
        glyph = Image.new("L", (width, height), 0)
        ImageDraw.Draw(glyph).text((1, 1), chr(code), fill=255, font=font)
        data = glyph.tobytes()
        rows = (
            "{" + ",".join(str(b) for b in data[y * width : (y + 1) * width]) + "}"
            for y in range(height)
        )
        lines.append("{" + ",".join(rows) + "},")
    lines.append("};")
    path.write_text("\n".join(lines) + "\n")


def compile_phone(workdir: Path) -> Path:
    """Build phone.c statically with the machine's gcc; return the binary."""
    if not (DRM_HEADERS / "drm_mode.h").exists():
        raise ImageError(f"{DRM_HEADERS}/drm_mode.h missing: apt-get install libdrm-dev")
    if shutil.which("gcc") is None:
        raise ImageError("gcc missing: apt-get install gcc libc6-dev")
    _font_header(workdir / "font.h")
    binary = workdir / "phone"
    _run(
        [
            "gcc",
            "-O2",
            "-static",
            "-Wall",
            "-Wno-unused-result",
            f"-I{DRM_HEADERS}",
            f"-I{workdir}",
            "-o",
            str(binary),
            str(PHONE_SOURCE),
        ]
    )
    return binary


def _cpio_entry(name: str, mode: int, data: bytes = b"", ino: int = 0) -> bytes:
    """One `newc` cpio record (header, name, data, 4-byte padding)."""
    encoded = name.encode() + b"\x00"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
    header = b"070701" + b"".join(f"{v:08X}".encode() for v in fields)
    record = header + encoded
    record += b"\x00" * (-len(record) % 4)
    record += data
    record += b"\x00" * (-len(record) % 4)
    return record


def write_initramfs(out: Path, files: dict[str, tuple[int, bytes]], dirs: Iterable[str]) -> None:
    """Write an uncompressed newc archive: `dirs` first, then `files` (name -> (mode, data))."""
    parts: list[bytes] = []
    ino = 1
    for d in dirs:
        parts.append(_cpio_entry(d, 0o040755, ino=ino))
        ino += 1
    for name, (mode, data) in files.items():
        parts.append(_cpio_entry(name, 0o100000 | mode, data, ino=ino))
        ino += 1
    parts.append(_cpio_entry("TRAILER!!!", 0))
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(b"".join(parts))
    tmp.replace(out)


def build_image(cache_dir: Path | None = None) -> GuestImage:
    """Run the whole recipe into `cache_dir`; return the image."""
    cache = cache_dir or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    if not BUSYBOX.exists():
        raise ImageError(f"{BUSYBOX} missing: apt-get install busybox-static")
    kernel_dir = cache / "kernel"
    stored_kernel = next(kernel_dir.glob("vmlinuz-*"), None) if kernel_dir.exists() else None
    scratch: Path | None = None
    try:
        if stored_kernel is None or not (kernel_dir / "modules").is_dir():
            vmlinuz, moddir = _fetch_kernel(cache)
            scratch = vmlinuz.parents[2]
            modules = module_closure(moddir, MODULES)
            shutil.rmtree(kernel_dir, ignore_errors=True)
            (kernel_dir / "modules").mkdir(parents=True)
            shutil.copy2(vmlinuz, kernel_dir / vmlinuz.name)
            for index, ko in enumerate(modules):
                shutil.copy2(ko, kernel_dir / "modules" / f"{index:02d}-{ko.name}")
            stored_kernel = kernel_dir / vmlinuz.name
        modules_sorted = sorted((kernel_dir / "modules").glob("*.ko"))
        with tempfile.TemporaryDirectory(dir=cache) as work:
            phone = compile_phone(Path(work))
            files: dict[str, tuple[int, bytes]] = {
                "init": (0o755, INIT_SCRIPT.encode()),
                "bin/busybox": (0o755, BUSYBOX.read_bytes()),
                "phone": (0o755, phone.read_bytes()),
                "modules.order": (0o644, "\n".join(p.name for p in modules_sorted).encode()),
            }
            for ko in modules_sorted:
                files[f"lib/modules/{ko.name}"] = (0o644, ko.read_bytes())
            write_initramfs(
                cache / "initramfs.cpio", files, ("bin", "lib", "lib/modules", "dev", "proc", "sys")
            )
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    manifest = {
        "recipe": _recipe_hash(),
        "kernel": str(stored_kernel.relative_to(cache)),
        "initrd": "initramfs.cpio",
    }
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("guest image ready in %s", cache)
    return GuestImage(kernel=stored_kernel, initrd=cache / "initramfs.cpio")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        image = build_image(args.cache_dir) if args.force else ensure_image(args.cache_dir)
    except ImageError as exc:
        log.error("qemu image: %s", exc)
        return 1
    print(f"kernel {image.kernel}\ninitrd {image.initrd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
