#!/usr/bin/env bash
# Builds the collection tarball and installs it into a scratch collections path,
# as a user would with ansible-galaxy, then checks Ansible finds its modules.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

ansible-galaxy collection build --output-path "$scratch" .
tarball=$(ls "$scratch"/clusterducks-vdisk-*.tar.gz)
ansible-galaxy collection install -p "$scratch/collections" "$tarball"
ANSIBLE_COLLECTIONS_PATH="$scratch/collections" ansible-doc -t module clusterducks.vdisk.lio_info >/dev/null
ANSIBLE_COLLECTIONS_PATH="$scratch/collections" ansible-galaxy collection list clusterducks.vdisk
echo "built and installed $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB)"
