"""The recipe guest image: Debian's generic kernel + a busybox initramfs running `phone.c`.

Why build it here instead of shipping one: no binaries live in git, and everything comes from
Debian packages by name (`linux-image-*` via `apt-get download`, `busybox-static`, the machine's
gcc and the kernel UAPI headers of `libdrm-dev`). The result is cached outside git (by default
`<repo>/.cache/qemu-image/`, or `$CLOUDPHONE_QEMU_IMAGE_DIR`) and rebuilt only when the recipe's
inputs change. The initramfs is written as a `newc` cpio by Python itself, so no cpio tool is
needed.

One image per guest architecture (`ARCHES`): x86_64 (bochs display) in the cache directory
itself, aarch64 (`-machine virt`, virtio-gpu) in its `aarch64/` subdirectory. A foreign
architecture's kernel and busybox come through `apt-get download pkg:arm64`, so apt checks them
against its signed lists (dpkg must know the architecture: scripts/install-system-deps.sh adds
it), and phone.c is built with the cross gcc (`aarch64-linux-gnu-gcc`).

Run it with `make qemu-image` or `python -m cloudphone.vm.qemu.image [--arch aarch64]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
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
#: Kernel modules the x86_64 guest needs; their dependencies are found from each module's modinfo.
MODULES = ("virtio_pci", "virtio_input", "evdev", "bochs")
_CMDLINE_REST = "quiet loglevel=3 panic=-1 vt.global_cursor_default=0"
#: The kernel command line the x86_64 image is made for (QemuProcess appends the display size).
KERNEL_CMDLINE = f"console=ttyS0 {_CMDLINE_REST}"


class ImageError(RuntimeError):
    """The recipe cannot run here (a tool or package is missing); the message says which."""


@dataclass(frozen=True, slots=True)
class ArchRecipe:
    """What differs between guest architectures: Debian's name, modules, console, toolchain."""

    arch: str  # QEMU's name (qemu-system-<arch>)
    deb_arch: str  # Debian's name, for `apt-get download pkg:<deb_arch>`
    triplet: str  # GNU triplet of the cross gcc when the host is another architecture
    modules: tuple[str, ...]
    console: str  # the serial port QEMU's default machine gives the kernel

    @property
    def native(self) -> bool:
        """The host runs this architecture: its own gcc and /bin/busybox serve the guest."""
        return platform.machine() == self.arch

    @property
    def cmdline(self) -> str:
        return f"console={self.console} {_CMDLINE_REST}"

    @property
    def compiler(self) -> str:
        return "gcc" if self.native else f"{self.triplet}-gcc"


ARCHES = {
    "x86_64": ArchRecipe("x86_64", "amd64", "x86_64-linux-gnu", MODULES, "ttyS0"),
    # virt has no bochs: virtio-gpu is the display (PL011 serial is built into Debian's kernel)
    "aarch64": ArchRecipe(
        "aarch64",
        "arm64",
        "aarch64-linux-gnu",
        ("virtio_pci", "virtio_input", "evdev", "virtio_gpu"),
        "ttyAMA0",
    ),
}


def arch_recipe(arch: str) -> ArchRecipe:
    """The recipe for `arch`, or an ImageError naming the ones there are."""
    try:
        return ARCHES[arch]
    except KeyError:
        raise ImageError(f"no guest image recipe for arch {arch!r}: {', '.join(ARCHES)}") from None


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


@dataclass(frozen=True, slots=True)
class GuestImage:
    """A built image: what QEMU boots."""

    kernel: Path
    initrd: Path
    cmdline: str = KERNEL_CMDLINE
    arch: str = "x86_64"


def default_cache_dir() -> Path:
    """`$CLOUDPHONE_QEMU_IMAGE_DIR`, else `.cache/qemu-image` in a checkout, else ~/.cache."""
    env = os.environ.get("CLOUDPHONE_QEMU_IMAGE_DIR")
    if env:
        return Path(env)
    root = HERE.parents[1]
    if (root / "setup.cfg").exists():
        return root / ".cache" / "qemu-image"
    return Path.home() / ".cache" / "cloudphone" / "qemu-image"


def image_dir(arch: str = "x86_64", cache_dir: Path | None = None) -> Path:
    """Where `arch`'s image lives: the cache directory (`cache_dir`, else the default) itself
    for x86_64, the path other tools know, and its `<arch>/` subdirectory for the others, so
    no build ever reuses another architecture's kernel."""
    base = cache_dir or default_cache_dir()
    return base if arch == "x86_64" else base / arch


def _recipe_hash(recipe: ArchRecipe) -> str:
    h = hashlib.sha256()
    h.update(str(RECIPE_VERSION).encode())
    h.update(PHONE_SOURCE.read_bytes())
    h.update(INIT_SCRIPT.encode())
    h.update(",".join(recipe.modules).encode())
    if recipe.arch != "x86_64":
        h.update(f"{recipe.arch} {recipe.cmdline}".encode())
    return h.hexdigest()[:16]


def cached_image(cache_dir: Path | None = None, arch: str = "x86_64") -> GuestImage | None:
    """The image if it is built and up to date, else None. Cheap: reads one manifest."""
    recipe = arch_recipe(arch)
    cache = image_dir(arch, cache_dir)
    try:
        manifest = json.loads((cache / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("recipe") != _recipe_hash(recipe):
        return None
    image = GuestImage(
        kernel=cache / manifest["kernel"],
        initrd=cache / manifest["initrd"],
        cmdline=recipe.cmdline,
        arch=arch,
    )
    if not (image.kernel.is_file() and image.initrd.is_file()):
        return None
    return image


def ensure_image(cache_dir: Path | None = None, arch: str = "x86_64") -> GuestImage:
    """Return the cached image, building it first when missing or stale."""
    image = cached_image(cache_dir, arch)
    if image is not None:
        return image
    return build_image(cache_dir, arch)


def _run(args: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise ImageError(f"{args[0]} missing: run scripts/install-system-deps.sh") from exc
    except subprocess.CalledProcessError as exc:
        raise ImageError(f"{' '.join(args)} failed: {exc.stderr.strip()[-800:]}") from exc
    return done.stdout


def _package(name: str, recipe: ArchRecipe) -> str:
    """`name` for apt, qualified with the architecture when it is not the host's own."""
    return name if recipe.native else f"{name}:{recipe.deb_arch}"


def check_foreign_arch(recipe: ArchRecipe) -> None:
    """apt serves a foreign architecture's packages only once dpkg knows it."""
    if recipe.native:
        return
    known = _run(["dpkg", "--print-foreign-architectures"]).split()
    if recipe.deb_arch not in known:
        raise ImageError(
            f"dpkg does not know architecture {recipe.deb_arch}, so apt cannot fetch the "
            f"{recipe.arch} guest's kernel and busybox: run scripts/install-system-deps.sh as "
            f"root (dpkg --add-architecture {recipe.deb_arch} && apt-get update)"
        )


def kernel_package_name(recipe: ArchRecipe | None = None) -> str:
    """The versioned package `linux-image-<deb arch>` depends on (e.g.
    linux-image-6.1.0-56-amd64, or linux-image-6.1.0-56-arm64:arm64 for a foreign one)."""
    recipe = recipe or ARCHES["x86_64"]
    meta = _package(f"linux-image-{recipe.deb_arch}", recipe)
    match = None
    for attempt in range(2):
        try:
            out = _run(["apt-cache", "depends", meta])
            match = re.search(r"Depends:\s*(linux-image-\S+)", out)
        except ImageError:
            match = None
        if match or attempt or os.geteuid() != 0:
            break
        log.info("apt lists know no kernel yet: apt-get update")
        _run(["apt-get", "update", "-q"])
    if not match:
        raise ImageError(f"apt-cache knows no {meta}: run `apt-get update` first")
    return match.group(1)


def _download_deb(package: str, scratch: Path) -> Path:
    """`apt-get download` one package (apt checks it against its signed lists) and unpack it
    into `scratch/root`; return that root."""
    log.info("downloading %s", package)
    _run(["apt-get", "download", package], cwd=scratch)
    debs = list(scratch.glob("*.deb"))
    if not debs:
        raise ImageError(f"apt-get download {package} produced no .deb")
    _run(["dpkg-deb", "-x", str(debs[0]), str(scratch / "root")])
    return scratch / "root"


def _fetch_kernel(cache: Path, recipe: ArchRecipe) -> tuple[Path, Path]:
    """Download and unpack the generic kernel; return (vmlinuz, modules dir) in a scratch tree
    (the caller removes it: `vmlinuz.parents[2]`)."""
    scratch = Path(tempfile.mkdtemp(prefix="kernel-", dir=cache))
    try:
        package = kernel_package_name(recipe)
        root = _download_deb(package, scratch)
        vmlinuz = next((root / "boot").glob("vmlinuz-*"), None)
        moddir = next((root / "lib" / "modules").glob("*"), None)
        if vmlinuz is None or moddir is None:
            raise ImageError(f"{package} has no kernel or modules")
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return vmlinuz, moddir


def _busybox(cache: Path, recipe: ArchRecipe) -> Path:
    """The guest's busybox: the host's own (busybox-static) when the architecture matches,
    else busybox-static:<deb arch> from apt, kept in `cache/busybox/`."""
    if recipe.native:
        if not BUSYBOX.exists():
            raise ImageError(f"{BUSYBOX} missing: apt-get install busybox-static")
        return BUSYBOX
    stored = cache / "busybox" / "busybox"
    if stored.is_file():
        return stored
    scratch = Path(tempfile.mkdtemp(prefix="busybox-", dir=cache))
    try:
        package = _package("busybox-static", recipe)
        binary = _download_deb(package, scratch) / "bin" / "busybox"
        if not binary.is_file():
            raise ImageError(f"{package} has no bin/busybox")
        stored.parent.mkdir(exist_ok=True)
        shutil.copy2(binary, stored)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return stored


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


def compile_phone(workdir: Path, recipe: ArchRecipe | None = None) -> Path:
    """Build phone.c statically with the machine's gcc, or the cross gcc for a foreign guest
    architecture; return the binary."""
    recipe = recipe or ARCHES["x86_64"]
    if not (DRM_HEADERS / "drm_mode.h").exists():
        raise ImageError(f"{DRM_HEADERS}/drm_mode.h missing: apt-get install libdrm-dev")
    if shutil.which(recipe.compiler) is None:
        packages = (
            "gcc libc6-dev"
            if recipe.native
            else f"gcc-{recipe.triplet} libc6-dev-{recipe.deb_arch}-cross"
        )
        raise ImageError(
            f"{recipe.compiler} missing: apt-get install {packages} "
            "(scripts/install-system-deps.sh)"
        )
    _font_header(workdir / "font.h")
    binary = workdir / "phone"
    _run(
        [
            recipe.compiler,
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


def build_image(cache_dir: Path | None = None, arch: str = "x86_64") -> GuestImage:
    """Run the whole recipe for `arch` into its cache directory; return the image."""
    recipe = arch_recipe(arch)
    cache = image_dir(arch, cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    check_foreign_arch(recipe)
    busybox = _busybox(cache, recipe)
    kernel_dir = cache / "kernel"
    stored_kernel = next(kernel_dir.glob("vmlinuz-*"), None) if kernel_dir.exists() else None
    scratch: Path | None = None
    try:
        if stored_kernel is None or not (kernel_dir / "modules").is_dir():
            vmlinuz, moddir = _fetch_kernel(cache, recipe)
            scratch = vmlinuz.parents[2]
            modules = module_closure(moddir, recipe.modules)
            shutil.rmtree(kernel_dir, ignore_errors=True)
            (kernel_dir / "modules").mkdir(parents=True)
            shutil.copy2(vmlinuz, kernel_dir / vmlinuz.name)
            for index, ko in enumerate(modules):
                shutil.copy2(ko, kernel_dir / "modules" / f"{index:02d}-{ko.name}")
            stored_kernel = kernel_dir / vmlinuz.name
        modules_sorted = sorted((kernel_dir / "modules").glob("*.ko"))
        with tempfile.TemporaryDirectory(dir=cache) as work:
            phone = compile_phone(Path(work), recipe)
            files: dict[str, tuple[int, bytes]] = {
                "init": (0o755, INIT_SCRIPT.encode()),
                "bin/busybox": (0o755, busybox.read_bytes()),
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
        "recipe": _recipe_hash(recipe),
        "arch": arch,
        "kernel": str(stored_kernel.relative_to(cache)),
        "initrd": "initramfs.cpio",
    }
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("%s guest image ready in %s", arch, cache)
    return GuestImage(
        kernel=stored_kernel, initrd=cache / "initramfs.cpio", cmdline=recipe.cmdline, arch=arch
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--arch", choices=sorted(ARCHES), default="x86_64", help="guest arch")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.force:
            image = build_image(args.cache_dir, args.arch)
        else:
            image = ensure_image(args.cache_dir, args.arch)
    except ImageError as exc:
        log.error("qemu image: %s", exc)
        return 1
    print(f"kernel {image.kernel}\ninitrd {image.initrd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
