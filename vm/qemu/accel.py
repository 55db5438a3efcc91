"""Choosing the accelerator: TCG unless a probe boot proves KVM works here.

Why a probe and not just `/dev/kvm`: on the machines this project runs on, `/dev/kvm` exists
but guests hang or crash under it (nested virtualisation without the CPU features QEMU asks
for). So `accel="auto"` boots the same guest once under KVM with a short deadline; only a
guest that shows its first frame counts. The verdict is cached per binary and boot source for
the life of the process, so the cost (up to `PROBE_TIMEOUT_S` on failure) is paid once.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import replace

from cloudphone.vm.guest import GuestError
from cloudphone.vm.qemu.process import QemuConfig

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 20.0
_verdicts: dict[tuple[str, str], str] = {}


async def choose_accel(config: QemuConfig, ready_on_stamp: bool = True) -> str:
    """ "kvm" when a KVM probe boot of `config` shows a frame, else "tcg"."""
    key = (config.binary_name(), str(config.kernel or config.disk))
    if key not in _verdicts:
        _verdicts[key] = await _probe(config, ready_on_stamp)
        log.info("qemu accelerator for %s: %s", key[1], _verdicts[key])
    return _verdicts[key]


async def _probe(config: QemuConfig, ready_on_stamp: bool) -> str:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    if config.arch != platform.machine():  # KVM runs only the host's own architecture
        return "tcg"
    from cloudphone.vm.qemu.guest import QemuGuest  # a guest is the probe: same ready rule

    probe = QemuGuest(
        "kvm-probe",
        replace(config, accel="kvm"),
        boot_timeout=PROBE_TIMEOUT_S,
        ready_on_stamp=ready_on_stamp,
    )
    try:
        await probe.start()
        return "kvm"
    except GuestError as exc:
        log.info("KVM probe failed, using TCG: %s", exc)
        return "tcg"
    finally:
        await probe.stop()
