#!/usr/bin/env bash
# clusterducks-vdisk: attach this device's vDisk over iSCSI at boot and build
# an overlayfs root on it. See docs/device-boot.md in clusterducks.vdisk.
# shellcheck disable=SC2154 # moddir is dracut's

# called by dracut
check() {
    require_binaries iscsistart curl blkid ip od tail tr sed grep stat || return 1
    # Only when asked for (the clusterducks.vdisk.dracut_overlay role does).
    return 255
}

# called by dracut
depends() {
    # network-legacy first so that 40network picks it: it brings the storage
    # NIC up from ip= (static or DHCP) and runs no daemon that outlives the
    # initramfs. url-lib brings curl and its TLS libraries.
    echo network-legacy network url-lib
    return 0
}

# called by dracut
installkernel() {
    instmods iscsi_tcp sd_mod overlay xfs ext4 btrfs crc32c
}

# called by dracut
install() {
    inst_multiple iscsistart curl blkid ip od tail tr sed grep stat mount umount \
        mkdir chmod chown rm mv cut wc head sleep udevadm mountpoint modprobe
    inst_multiple -o xfs_info xfs_db xfs_spaceman
    inst_simple /etc/clusterducks/vdisk.conf
    inst_simple /etc/clusterducks/vdisk-api-ca.crt
    inst_simple "$moddir/vdisk-lib.sh" /lib/clusterducks-vdisk-lib.sh
    inst_hook cmdline 90 "$moddir/parse-vdisk.sh"
    inst_hook initqueue/timeout 10 "$moddir/vdisk-network-timeout.sh"
    inst_hook pre-mount 50 "$moddir/vdisk-attach.sh"
    inst_hook pre-pivot 50 "$moddir/vdisk-overlay.sh"
    dracut_need_initqueue
}
