"""The aarch64 recipe guest (`-machine virt`, virtio-gpu, phone.c cross-compiled) end to end:
configured per instance with `arch = "aarch64"` as `cloudphone serve --guest qemu` reads it,
streamed through the edge to an aiortc viewer; a key, a tap and a resolution change go in over
the `input` data channel and show in the decoded frames. One boot under TCG (4.5-6 s to the first
frame here, 9-11 s for the whole test, 15 s on a loaded machine). The cheap checks (config to
QEMU's command line, clear errors when a tool is missing) run without a boot."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pytest
from cloudphone.edge.app import instance_specs
from cloudphone.edge.config import load_config
from cloudphone.vm.guest import GuestError, GuestState
from cloudphone.vm.pool import GuestSpec
from cloudphone.vm.qemu import QemuConfig, QemuGuest, QemuProcess, accel, qemu_guest_factory
from cloudphone.vm.qemu.image import (
    ARCHES,
    ImageError,
    arch_recipe,
    check_foreign_arch,
    compile_phone,
    default_cache_dir,
    image_dir,
)

from tests.conftest import EdgeFactory
from tests.qemu_support import (
    QEMU_AARCH64_BINARY,
    differs,
    recipe_image,
    requires_qemu_aarch64,
    stamped,
    tap_shows_dot,
    until_frame,
)

log = logging.getLogger(__name__)


def test_toml_instance_arch_reaches_the_qemu_command_line(tmp_path: Path) -> None:
    kernel = tmp_path / "Image"
    kernel.write_bytes(b"x")
    config_file = tmp_path / "edge.toml"
    config_file.write_text(
        'guest = "qemu"\n[[instances]]\nid = "arm-1"\nkind = "qemu"\n'
        f'arch = "aarch64"\nkernel = "{kernel}"\n'
    )
    ((guest_id, spec),) = instance_specs(load_config(config_file, environ={}))
    guest = qemu_guest_factory(guest_id, spec)
    assert guest.config.arch == "aarch64"
    assert "console=ttyAMA0" in guest.config.append  # virt's PL011, not the PC's ttyS0
    if shutil.which(QEMU_AARCH64_BINARY) is None:
        pytest.skip(f"!! {QEMU_AARCH64_BINARY} is not installed: cannot build its command line")
    argv = QemuProcess(guest.config, tmp_path).argv()
    assert argv[0].endswith("qemu-system-aarch64")
    assert argv[argv.index("-machine") + 1] == "virt"
    assert argv[argv.index("-cpu") + 1] == "max,pauth-impdef=on"
    assert "virtio-gpu-pci,xres=720,yres=1280" in argv
    assert "video=Virtual-1:720x1280" in argv[argv.index("-append") + 1]


def test_aarch64_image_lives_beside_the_x86_image_without_moving_it() -> None:
    assert image_dir("x86_64") == default_cache_dir()
    assert image_dir("aarch64") == default_cache_dir() / "aarch64"
    assert image_dir("x86_64", Path("/elsewhere")) == Path("/elsewhere")
    assert image_dir("aarch64", Path("/elsewhere")) == Path("/elsewhere/aarch64")
    assert "virtio_gpu" in arch_recipe("aarch64").modules
    assert "bochs" in arch_recipe("x86_64").modules
    with pytest.raises(ImageError, match="no guest image recipe for arch 'riscv64'"):
        arch_recipe("riscv64")


def test_missing_cross_compiler_is_a_clear_image_error(tmp_path: Path) -> None:
    recipe = dataclasses.replace(ARCHES["aarch64"], triplet="no-such-triplet")
    if recipe.native:
        pytest.skip("the host is aarch64: its own gcc builds the guest program")
    with pytest.raises(ImageError, match="no-such-triplet-gcc missing: apt-get install"):
        compile_phone(tmp_path, recipe)


def test_foreign_arch_unknown_to_dpkg_is_a_clear_image_error() -> None:
    recipe = dataclasses.replace(ARCHES["aarch64"], deb_arch="no-such-debarch")
    if recipe.native:
        pytest.skip("the host is aarch64: no foreign architecture is needed")
    with pytest.raises(ImageError, match="dpkg --add-architecture no-such-debarch"):
        check_foreign_arch(recipe)


async def test_missing_aarch64_qemu_or_unknown_arch_is_a_clear_guest_error(
    tmp_path: Path,
) -> None:
    kernel = tmp_path / "Image"
    kernel.write_bytes(b"x")
    missing = QemuConfig(kernel=kernel, arch="aarch64", binary="qemu-system-nonexistent")
    with pytest.raises(GuestError, match="apt-get install qemu-system-arm"):
        QemuProcess(missing, tmp_path).argv()
    odd = QemuConfig(kernel=kernel, arch="riscv64", binary="true")
    with pytest.raises(GuestError, match="unsupported qemu arch 'riscv64'"):
        QemuProcess(odd, tmp_path).argv()
    # through the pool's factory an unknown arch fails before anything boots
    with pytest.raises(GuestError, match="no guest image recipe for arch 'riscv64'"):
        qemu_guest_factory("odd", GuestSpec(kind="qemu", options={"arch": "riscv64"}))


async def test_auto_accel_never_probes_kvm_for_a_foreign_arch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if ARCHES["aarch64"].native:
        pytest.skip("the host is aarch64: KVM may run this guest")

    async def no_probe(self: QemuGuest) -> None:
        raise AssertionError("a KVM probe boot was started for a foreign architecture")

    monkeypatch.setattr(accel.os, "access", lambda *args: True)  # as if /dev/kvm were usable
    monkeypatch.setattr(QemuGuest, "start", no_probe)
    config = QemuConfig(kernel=tmp_path / "Image", arch="aarch64", accel="auto")
    assert await accel.choose_accel(config) == "tcg"


@requires_qemu_aarch64
@pytest.mark.qemu
async def test_aarch64_guest_streams_through_the_edge(
    make_edge: EdgeFactory, record_property: pytest.RecordProperty
) -> None:
    image = recipe_image("aarch64")  # build (or reuse) before the edge boots the guest
    edge = await make_edge(
        guest="qemu", instances=[{"id": "phone-1", "kind": "qemu", "arch": "aarch64"}]
    )
    guest = edge.pool.get("phone-1")
    assert isinstance(guest, QemuGuest) and guest.state == GuestState.RUNNING
    assert guest.config.arch == "aarch64" and guest.config.kernel == image.kernel
    assert guest.process is not None and "virtio-gpu-pci" in " ".join(guest.process.argv())
    assert guest.boot_to_first_frame is not None
    record_property("boot_to_first_frame_s", round(guest.boot_to_first_frame, 2))
    log.info("aarch64 guest: first frame %.2f s after QEMU start", guest.boot_to_first_frame)

    client = await edge.viewer(codec="h264")
    assert client.welcome["screen"] == {"width": 720, "height": 1280, "rotation": 0}
    first = await client.wait_for_frame(lambda f: f.stamp is not None, 15.0)
    assert (first.width, first.height) == (720, 1280)

    # a key: the typed-text panel changes (the guest flushed its dumb buffer: DIRTYFB)
    panel = (slice(60, 180), slice(0, 720))
    seq = client.send_input({"type": "key", "a": "press", "code": "KeyA", "shift": True})
    await until_frame(
        client, seq, lambda f: differs(f.luma[panel], first.luma[panel]), "typed text"
    )

    # a tap: a bright dot where it landed, on a dark background
    await tap_shows_dot(client, 0.3, 0.8)

    # a new mode (a new dumb buffer on virtio-gpu) reaches the viewer on the same connection
    seq = client.send_input({"type": "key", "a": "press", "code": "F11"})
    wide = await client.wait_for_frame(lambda f: f.width == 1280 and stamped(seq)(f), 10.0)
    assert (wide.width, wide.height) == (1280, 720)
