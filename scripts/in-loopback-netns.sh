#!/usr/bin/env bash
# Runs a command in a fresh network namespace that has only `lo`, so no test can ever send a
# packet beyond this machine's loopback (ICE, STUN, browsers). Falls back to running it
# directly, loudly, where namespaces cannot be made (not root, no unshare).
set -uo pipefail
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
    exec unshare -n -- bash -c 'ip link set lo up 2>/dev/null || true; exec "$@"' bash "$@"
fi
echo "!! no private network namespace: running on the host's network (tests still use 127.0.0.1 only)" >&2
exec "$@"
