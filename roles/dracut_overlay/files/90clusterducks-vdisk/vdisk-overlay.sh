#!/bin/sh
# pre-pivot hook: the image root becomes the read-only lower layer at
# /run/clusterducks/lower, the vDisk holds the upper and work directories, and
# the overlay is mounted on $NEWROOT; the vDisk mounts move into the new root.
# Then the booted system is told to keep the storage NIC and the session.
# shellcheck source=vdisk-lib.sh
command -v vdisk_load_config > /dev/null || . /lib/clusterducks-vdisk-lib.sh

# Options that stay correct when the lower is replaced by a new image between
# boots: the kernel's overlayfs docs allow offline lower changes only if index,
# metacopy, xino and redirect_dir were never used (Debian's kernel follows
# redirects unless told not to).
VDISK_OVERLAY_OPTS=index=off,redirect_dir=nofollow,metacopy=off,xino=off

vdisk_build_root() {
    # shellcheck disable=SC1091
    . "$VDISK_RUN/vdisk.env"
    _stage_upper="$VDISK_STAGE$VDISK_OVERLAY_UPPER"
    _stage_work="$VDISK_STAGE$VDISK_OVERLAY_WORK"
    _upper_mnt="$VDISK_STAGE/$(vdisk_mount_of "$VDISK_OVERLAY_UPPER")"

    # What overlayfs needs from the upper's filesystem: d_type (XFS ftype=1)
    # and trusted.* xattrs (xfs, ext4 and btrfs have them).
    if [ "$(stat -f -c %T "$_upper_mnt")" = xfs ] && command -v xfs_info > /dev/null \
        && ! xfs_info "$_upper_mnt" 2> /dev/null | grep -q 'ftype=1'; then
        vdisk_fail overlay "the XFS on $_upper_mnt lacks ftype=1 (d_type), which overlayfs needs: recreate it with mkfs.xfs -n ftype=1"
        return 1
    fi

    # The image root, read-only, stays visible at a fixed path.
    mkdir -p "$VDISK_LOWER"
    mount -o remount,ro "$NEWROOT" 2> /dev/null || :
    mount --bind "$NEWROOT" "$VDISK_LOWER"
    # Out of $NEWROOT's peer group, or the overlay mounted on $NEWROOT would
    # propagate onto the lower's own path.
    mount --make-private "$VDISK_LOWER"
    mount -o remount,bind,ro "$VDISK_LOWER"

    if [ ! -d "$_stage_upper" ]; then
        # The upper's root is the overlay's /: it takes the image root's mode.
        mkdir -p "$_stage_upper"
        chmod "$(stat -c %a "$VDISK_LOWER")" "$_stage_upper"
        chown "$(stat -c %u:%g "$VDISK_LOWER")" "$_stage_upper"
    fi
    mkdir -p "$_stage_work"
    chmod 0700 "$_stage_work"

    if ! _out=$(mount -t overlay clusterducks-root \
        -o "lowerdir=$VDISK_LOWER,upperdir=$_stage_upper,workdir=$_stage_work,$VDISK_OVERLAY_OPTS" \
        "$NEWROOT" 2>&1); then
        umount "$VDISK_LOWER" 2> /dev/null
        vdisk_fail overlay "cannot mount the overlay root (upper $VDISK_OVERLAY_UPPER, work $VDISK_OVERLAY_WORK): $_out"
        return 1
    fi
    vdisk_say "root is an overlay: lower $VDISK_LOWER (the image), upper $VDISK_OVERLAY_UPPER on the vDisk"
    return 0
}

# The vDisk's mounts appear at their paths in the new root (top-level ones
# carry their nested mounts along).
vdisk_place_mounts() {
    for _m in $VDISK_MOUNTS; do
        _p=${_m#*:}
        _nested=
        for _o in $VDISK_MOUNTS; do
            case "$_p/" in "${_o#*:}/"?*) _nested=1 ;; esac
        done
        [ -n "$_nested" ] && continue
        if ! mkdir -p "$NEWROOT/$_p" 2> /dev/null; then
            vdisk_fail mount "the mount point /$_p does not exist in the root and cannot be made (without the overlay, the image must have it)"
            return 1
        fi
        if ! _out=$(mount --rbind "$VDISK_STAGE/$_p" "$NEWROOT/$_p" 2>&1); then
            vdisk_fail mount "cannot place the vDisk mount /$_p in the new root: $_out"
            return 1
        fi
    done
    umount -R "$VDISK_STAGE" 2> /dev/null || umount -l "$VDISK_STAGE"
    return 0
}

# The booted system must not take the storage NIC down, drop its address or
# log the session out while / depends on it.
vdisk_hand_over() {
    _ip=${VDISK_PORTAL%:*}
    _ip=${_ip#[}
    _ip=${_ip%]}
    _if=$(ip -o route get "$_ip" 2> /dev/null | sed -n 's/.* dev \([^ ]*\).*/\1/p')
    if [ -n "$_if" ]; then
        mkdir -p /run/systemd/network
        {
            echo "# Written at boot by clusterducks-vdisk: / is on an iSCSI vDisk reached through $_if."
            echo "[Match]"
            echo "Name=$_if"
            echo "[Link]"
            echo "RequiredForOnline=no"
            echo "[Network]"
            echo "KeepConfiguration=yes"
            echo "LinkLocalAddressing=no"
            echo "IPv6AcceptRA=no"
            if ls /tmp/leaseinfo."$_if".dhcp.ipv4 > /dev/null 2>&1; then
                echo "DHCP=ipv4"
                echo "[DHCPv4]"
                echo "ClientIdentifier=mac"
            else
                ip -o -4 addr show dev "$_if" scope global | while read -r _ _ _ _addr _; do
                    echo "Address=$_addr"
                done
                ip -4 route show default dev "$_if" | sed -n 's/^default via \([^ ]*\).*/Gateway=\1/p'
            fi
        } > /run/systemd/network/10-clusterducks-vdisk.network
        mkdir -p /run/NetworkManager/conf.d
        printf '[keyfile]\nunmanaged-devices=interface-name:%s\n' "$_if" \
            > /run/NetworkManager/conf.d/90-clusterducks-vdisk.conf
        echo "VDISK_INTERFACE='$_if'" >> "$VDISK_RUN/vdisk.env"
    fi
    # The real root's iscsid adopts the session; it logs in again after a
    # storage host reboot with this device's initiator name.
    mkdir -p "$NEWROOT/etc/iscsi"
    if [ "$(cat "$NEWROOT/etc/iscsi/initiatorname.iscsi" 2> /dev/null)" != "InitiatorName=$VDISK_INITIATOR_IQN" ]; then
        echo "InitiatorName=$VDISK_INITIATOR_IQN" > "$NEWROOT/etc/iscsi/initiatorname.iscsi"
    fi
    # dracut's shutdown hand-back: systemd returns to the initramfs, which
    # unmounts the overlay and the vDisk before the machine powers off.
    need_shutdown
}

if [ -e "$VDISK_RUN/vdisk.status" ] && grep -qx 'state=attached' "$VDISK_RUN/vdisk.status"; then
    vdisk_load_config
    if [ "${VDISK_OVERLAY:-}" != 0 ] && grep -qx "VDISK_OVERLAY='1'" "$VDISK_RUN/vdisk.env"; then
        vdisk_build_root && vdisk_place_mounts && vdisk_hand_over
    else
        # shellcheck disable=SC1091
        . "$VDISK_RUN/vdisk.env"
        vdisk_place_mounts && vdisk_hand_over
    fi
    vdisk_mark overlay
fi
vdisk_forget_secrets
