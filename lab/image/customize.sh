#!/usr/bin/env bash
# mmdebstrap customize hook: turns the installed Debian rootfs into a lab VM image.
# $1: the rootfs directory (mmdebstrap has /proc, /sys and /dev mounted in it).
# $2: the public SSH key the lab logs in with.
set -euo pipefail
root=$1
pubkey=$2
here=$(dirname "$(readlink -f "$0")")

cp -a "$here/overlay/." "$root/"

install -d -m 0700 "$root/root/.ssh"
install -m 0600 "$pubkey" "$root/root/.ssh/authorized_keys"

echo cdlab > "$root/etc/hostname"
printf '127.0.0.1 localhost\n' > "$root/etc/hosts"
# The rootfs is one ext4 filesystem on /dev/vda, labelled by build.sh.
printf 'LABEL=cdlab-root / ext4 defaults,noatime 0 1\n' > "$root/etc/fstab"
# A fresh machine-id at every first boot of a VM, not one shared by all.
: > "$root/etc/machine-id"

# Root's bytecode cache for zip imports (overlay/usr/lib/python3/dist-packages/
# cdlab_zipimport_cache.py says why): root's alone, so only root puts code in it.
install -d -m 0700 "$root/var/cache/cdlab-zipimport"

chroot "$root" systemctl enable systemd-networkd.service systemd-network-generator.service
# Nothing in the lab waits for "online": the storage NIC is static and the
# management NIC only carries SSH. Timers and first-boot jobs only cost boot time.
# dpkg-db-backup.timer is Persistent and daily: it ran at every VM's first boot.
# modprobe@drm.service loads a 600 KiB module (early KMS) that no lab VM, which
# has no display, uses; overlay/etc/modprobe.d/ keeps udev from loading other
# unused drivers.
chroot "$root" systemctl mask \
    systemd-networkd-wait-online.service \
    apt-daily.timer apt-daily-upgrade.timer man-db.timer e2scrub_all.timer \
    fstrim.timer e2scrub_reap.service dpkg-db-backup.timer modprobe@drm.service
# nginx-light is in the image for the storage API's front, which is a unit of
# its own. Debian's nginx.service (a default site on port 80) is not wanted on
# any lab VM, and fails to start on a kernel booted with ipv6.disable=1.
chroot "$root" systemctl disable nginx.service
# lvm2 is in the image for storage VMs (LVM thin pools). Device VMs boot the
# same image and have no volume group: keep LVM's units out of their boot
# (TCG devices are starved enough during the switch from the initramfs's
# iSCSI session to iscsid). The storage_host role enables what a pool needs.
chroot "$root" systemctl disable lvm2-monitor.service lvm2-lvmpolld.socket dm-event.socket blk-availability.service

# The image's one kernel (a DKMS build may add a modules directory for the
# build host's kernel too, so /lib/modules does not tell).
kver=$(basename "$(ls "$root"/boot/vmlinuz-*)" | sed 's/^vmlinuz-//')

# A DKMS module (zfs, in the backends variant) is built for the image's kernel, not for
# the build host's: build it explicitly and fail the build if it is missing.
if [ -d "$root/var/lib/dkms" ] && chroot "$root" dkms status | grep -q .; then
    chroot "$root" dkms autoinstall -k "$kver"
    for module in $(chroot "$root" dkms status -k "$kver" | cut -d/ -f1 | sort -u); do
        chroot "$root" modinfo -k "$kver" "$module" > /dev/null
    done
fi

# Small, uncompressed, generic initramfs for a virtio root disk. No network in
# it: the real root's systemd-network-generator configures eth1 from ip= (an
# initrd that did it too would make that generator fail on the existing file).
chroot "$root" dracut --force --no-hostonly --no-compress \
    --modules "base systemd systemd-initrd dracut-systemd udev-rules kernel-modules rootfs-block fs-lib shutdown" \
    --omit "ifcfg network network-legacy systemd-networkd kernel-network-modules dbus dbus-daemon" \
    --drivers "virtio_pci virtio_blk virtio_net ext4 crc32c_generic" \
    "/boot/initrd.img-$kver" "$kver"

# Keep the image lean: package caches and docs are not needed to boot.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
