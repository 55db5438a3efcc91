#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real (Chromium for the browser tests,
# QEMU and busybox for the guest tests, the aarch64 emulator and cross compiler for the arm64
# guest). Needs root; otherwise says so loudly and the affected tests skip with their own reason.
# The arm64 guest's own packages (kernel, busybox-static:arm64) are not installed: the image
# recipe fetches them with `apt-get download pkg:arm64`, which checks them against apt's signed
# lists; that needs arm64 among dpkg's architectures, added here.
set -euo pipefail
want=()
command -v chromium >/dev/null 2>&1 || want+=(chromium chromium-driver)
command -v qemu-system-x86_64 >/dev/null 2>&1 || want+=(qemu-system-x86)
command -v qemu-system-aarch64 >/dev/null 2>&1 || want+=(qemu-system-arm)
[ -x /bin/busybox ] || want+=(busybox-static)
[ -e /usr/include/libdrm/drm_mode.h ] || want+=(libdrm-dev)  # UAPI headers for the QEMU guest program
command -v gcc >/dev/null 2>&1 || want+=(gcc libc6-dev)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || want+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
fc-list 2>/dev/null | grep -qi dejavu || want+=(fonts-dejavu-core)
command -v ip >/dev/null 2>&1 || want+=(iproute2)
add_arm64=
dpkg --print-foreign-architectures 2>/dev/null | grep -qx arm64 || add_arm64=yes
if [ ${#want[@]} -eq 0 ] && [ -z "$add_arm64" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    [ -z "$add_arm64" ] || echo "!! not root: cannot add dpkg architecture arm64 (aarch64 guest image)" >&2
    [ ${#want[@]} -eq 0 ] || echo "!! not root: cannot install ${want[*]}; tests needing them will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
[ -z "$add_arm64" ] || dpkg --add-architecture arm64
apt-get update -q
[ ${#want[@]} -eq 0 ] || apt-get install -y -q --no-install-recommends "${want[@]}"
