#!/usr/bin/env bash
# Builds the lab VM image from Debian packages into OUTDIR:
#   rootfs.img (raw ext4, sparse), vmlinuz, initrd.img, id_ed25519{,.pub}, manifest.txt
# Usage: build.sh OUTDIR [VARIANT]
#   VARIANT: also install the packages of variants/VARIANT.txt (whose
#   "# components:" line names further archive components, e.g. contrib).
# Needs root, mmdebstrap and e2fsprogs. Called by `lab/cdlab image`, which caches
# OUTDIR by a hash of this directory (variants/ apart: each variant has its own
# key): edit anything here and the image is rebuilt.
set -euo pipefail
out=$1
here=$(dirname "$(readlink -f "$0")")
suite=bookworm
mirror=${CDLAB_MIRROR:-http://deb.debian.org/debian}
security=${CDLAB_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
size=${CDLAB_ROOTFS_SIZE:-6G}

mkdir -p "$(dirname "$out")"
work=$(mktemp -d "${out%/}.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs"

ssh-keygen -q -t ed25519 -N '' -C cdlab -f "$work/id_ed25519"

variant=${2:-}
lists=("$here/packages.txt")
components=main
if [ -n "$variant" ]; then
    lists+=("$here/variants/$variant.txt")
    extra=$(sed -n 's/^# components: *//p' "$here/variants/$variant.txt")
    components=main${extra:+,$extra}
fi
packages=$(cat "${lists[@]}" | grep -v '^\s*#' | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
sources=${components//,/ }

mmdebstrap --variant=apt --components="$components" \
    --include="$packages" \
    --essential-hook="mkdir -p \"\$1/etc/dracut.conf.d\" && cp '$here/overlay/etc/dracut.conf.d/10-cdlab.conf' \"\$1/etc/dracut.conf.d/\"" \
    --customize-hook="'$here/customize.sh' \"\$1\" '$work/id_ed25519.pub'" \
    "$suite" "$work/rootfs" \
    "deb $mirror $suite $sources" \
    "deb $mirror $suite-updates $sources" \
    "deb $security $suite-security $sources"

cp "$work"/rootfs/boot/vmlinuz-* "$work/vmlinuz"
cp "$work"/rootfs/boot/initrd.img-* "$work/initrd.img"
chmod 0644 "$work/vmlinuz" "$work/initrd.img"

mke2fs -q -t ext4 -L cdlab-root -d "$work/rootfs" "$work/rootfs.img" "$size"

{
    echo "built: $(date -u +%FT%TZ)"
    echo "kernel: $(basename "$(ls "$work"/rootfs/boot/vmlinuz-*)" | sed 's/^vmlinuz-//')"
    # shellcheck disable=SC2016 # dpkg-query's own format, not shell
    chroot "$work/rootfs" dpkg-query -W -f '${Package} ${Version}\n'
} > "$work/manifest.txt"

rm -rf "$work/rootfs"
mv "$work" "$out"
trap - EXIT
