#!/usr/bin/env bash
# mypy cannot see through setuptools' editable-install import hook, and the folders are mapped
# under `cloudphone` (setup.cfg package_dir). So we give it the same mapping as a tree of
# symlinks in build/ and check the import root, plus tests and benchmarks against it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=build/typecheck/cloudphone
rm -rf build/typecheck && mkdir -p "$root"
for room in vm codecs signaling edge static benchmarks; do
    ln -s "../../../$room" "$root/$room"
done
MYPYPATH=build/typecheck exec "${MYPY:-mypy}" -p cloudphone "$@"
