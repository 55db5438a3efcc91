#!/usr/bin/env bash
# Installs the Debian packages the test suite drives for real (Chromium for the browser tests,
# QEMU and busybox for the guest tests, the aarch64 emulator and cross compiler for the arm64
# guest, coturn for the TURN relay tests), and unpacks a second, newer QEMU for the multi-touch path. Needs root; otherwise says
# so loudly and the affected tests skip with their own reason.
#
# The arm64 guest's own packages (kernel, busybox-static:arm64) are not installed: the image
# recipe fetches them with `apt-get download pkg:arm64`, which checks them against apt's signed
# lists; that needs arm64 among dpkg's architectures, added here.
#
# Why QEMU twice: Debian 12's QEMU 7.2 has no multi-touch device (the single-touch path is
# tested on it, so it stays the system's QEMU); virtio-multitouch-pci needs QEMU >= 8.1, which
# bookworm-backports has. The backports packages are downloaded through apt (signed by the
# Debian archive key) and only unpacked with `dpkg-deb -x` into .cache/qemu-backports/ (outside
# git), never installed: the system QEMU stays 7.2, and vm/qemu/process.py points the unpacked
# binary at its own firmware and modules (-L, QEMU_MODULE_DIR). apt-get update runs at most once.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
backports_dir="${CLOUDPHONE_QEMU_BACKPORTS_DIR:-$root/.cache/qemu-backports}"
backports_list=/etc/apt/sources.list.d/cloudphone-bookworm-backports.sources
backports_pkgs=(qemu-system-x86 qemu-system-common qemu-system-data seabios)

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
command -v turnserver >/dev/null 2>&1 || want+=(coturn)  # the TURN relay tests (not started as a service)

# The newer QEMU is wanted on bookworm only (later Debian releases ship QEMU >= 8.1 themselves).
codename="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")"
want_backports=0
if [ "$codename" = bookworm ] && [ ! -x "$backports_dir/usr/bin/qemu-system-x86_64" ]; then
    want_backports=1
fi
add_arm64=
dpkg --print-foreign-architectures 2>/dev/null | grep -qx arm64 || add_arm64=yes
if [ ${#want[@]} -eq 0 ] && [ $want_backports = 0 ] && [ -z "$add_arm64" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    [ -z "$add_arm64" ] || echo "!! not root: cannot add dpkg architecture arm64 (aarch64 guest image)" >&2
    [ $want_backports = 1 ] && want+=("QEMU>=8.1 from bookworm-backports")
    [ ${#want[@]} -eq 0 ] || echo "!! not root: cannot install ${want[*]}; tests needing them will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
update=$(( ${#want[@]} > 0 ))
if [ -n "$add_arm64" ]; then
    dpkg --add-architecture arm64
    update=1
fi
if [ $want_backports = 1 ]; then
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        # Backports are NotAutomatic: nothing is installed from them unless asked for by name.
        cat > "$backports_list" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
        update=1
    elif ! apt-cache madison qemu-system-x86 2>/dev/null | grep bookworm-backports >/dev/null; then
        update=1  # the source is there but its lists were never fetched
    fi
fi
if [ $update = 1 ]; then
    apt-get update -q
fi
if [ ${#want[@]} -gt 0 ]; then
    apt-get install -y -q --no-install-recommends "${want[@]}"
fi
if [ $want_backports = 1 ]; then
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    chown _apt "$scratch" 2>/dev/null || true  # apt downloads as _apt where it can
    (cd "$scratch" && apt-get download -q "${backports_pkgs[@]/%//bookworm-backports}")
    rm -rf "$backports_dir.tmp"
    mkdir -p "$backports_dir.tmp"
    for deb in "$scratch"/*.deb; do
        dpkg-deb -x "$deb" "$backports_dir.tmp"
    done
    rm -rf "$backports_dir"
    mv "$backports_dir.tmp" "$backports_dir"
    echo "$("$backports_dir/usr/bin/qemu-system-x86_64" --version | head -1) unpacked in $backports_dir"
fi
