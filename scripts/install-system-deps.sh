#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real (Chromium for the browser tests,
# QEMU and busybox for the guest tests). Needs root; otherwise says so loudly and the affected
# tests skip with their own reason.
set -euo pipefail
want=()
command -v chromium >/dev/null 2>&1 || want+=(chromium chromium-driver)
command -v qemu-system-x86_64 >/dev/null 2>&1 || want+=(qemu-system-x86)
[ -x /bin/busybox ] || want+=(busybox-static)
[ -e /usr/include/libdrm/drm_mode.h ] || want+=(libdrm-dev)  # UAPI headers for the QEMU guest program
command -v gcc >/dev/null 2>&1 || want+=(gcc libc6-dev)
fc-list 2>/dev/null | grep -qi dejavu || want+=(fonts-dejavu-core)
command -v ip >/dev/null 2>&1 || want+=(iproute2)
if [ ${#want[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "!! not root: cannot install ${want[*]}; tests needing them will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${want[@]}"
