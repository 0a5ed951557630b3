#!/bin/sh
# pre-mount hook: ask the storage API for this device's boot record, log in to
# its iSCSI target, wait for the disk by its identity and mount its filesystems
# under /run/clusterducks/vdisk. The overlay is built in pre-pivot.
# shellcheck disable=SC2034,SC2153 # VDISK_* come from the record (eval) and go to vdisk_write_env
# shellcheck source=vdisk-lib.sh
command -v vdisk_load_config > /dev/null || . /lib/clusterducks-vdisk-lib.sh

vdisk_attach() {
    vdisk_load_config
    if [ -e "$VDISK_RUN/config-error" ]; then
        vdisk_fail config "$(cat "$VDISK_RUN/config-error")"
        return 1
    fi
    _deadline=$(($(cut -d. -f1 /proc/uptime) + VDISK_TIMEOUT))
    vdisk_mark network

    VDISK_DEVICE_ID=$(vdisk_device_id)
    vdisk_match "$VDISK_DEVICE_ID" "$VDISK_DEVICE_ERE" || {
        vdisk_fail device "no valid device id (got '$VDISK_DEVICE_ID'): set rd.vdisk.device= or the SMBIOS OEM string ${VDISK_SMBIOS_PREFIX}device="
        return 1
    }
    (umask 077 && mkdir -p "$VDISK_SECRET")
    _token=$(vdisk_read_token)
    vdisk_match "$_token" '^[A-Za-z0-9._~+/=-]{16,512}$' || {
        vdisk_fail token "no device token from '$VDISK_TOKEN_SOURCE' (SMBIOS OEM string ${VDISK_SMBIOS_PREFIX}token=, file:/PATH or cmdline:TOKEN)"
        return 1
    }
    # curl reads the header from a 0600 file: the token never is an argument.
    (umask 077 && printf 'Authorization: Bearer %s\n' "$_token" > "$VDISK_SECRET/auth-header")
    unset _token

    vdisk_fetch_record || return 1
    vdisk_mark api

    vdisk_login || return 1
    vdisk_forget_secrets
    vdisk_mark login

    vdisk_wait_disk || return 1
    vdisk_mark disk

    vdisk_mount_all || return 1
    vdisk_mark mounts
    vdisk_write_env
    vdisk_status attached
    return 0
}

# Each API URL in turn until one answers or the time is up. curl retries
# transient failures itself; 401/403/404 are answers, not failures to retry.
vdisk_fetch_record() {
    _record="$VDISK_SECRET/record.sh"
    _last="no answer"
    while :; do
        for _url in $VDISK_API_URLS; do
            _w=$(curl --silent --show-error --proto '=https' --cacert "$VDISK_CA" \
                --connect-timeout 5 --max-time 20 --retry 2 --retry-connrefused --retry-delay 1 \
                -H "@$VDISK_SECRET/auth-header" -H 'Accept: text/plain' \
                --output "$_record" --write-out '%{http_code} connect=%{time_connect}s tls=%{time_appconnect}s total=%{time_total}s' \
                "${_url%/}/api/v1/boot/$VDISK_DEVICE_ID?format=sh" 2> "$VDISK_RUN/curl.err")
            _code=${_w%% *}
            echo "$(vdisk_uptime) $_url HTTP ${_w:-000} $(head -c 200 "$VDISK_RUN/curl.err" | tr '\n' ' ')" >> "$VDISK_RUN/api.log"
            case "$_code" in
                200)
                    # Not in a subshell: the parser sets the VDISK_* variables.
                    if ! vdisk_parse_record "$_record" > "$VDISK_RUN/record-problem"; then
                        vdisk_fail record "the boot record from $_url is unusable: $(cat "$VDISK_RUN/record-problem")"
                        return 1
                    fi
                    rm -f "$VDISK_RUN/record-problem"
                    vdisk_say "boot record revision $VDISK_REVISION from $_url: vDisk $VDISK_NAME, target $VDISK_TARGET_IQN LUN $VDISK_LUN"
                    return 0
                    ;;
                401)
                    vdisk_fail token "the storage API at $_url refused the device token of $VDISK_DEVICE_ID (401)"
                    return 1
                    ;;
                403)
                    vdisk_fail token "the device token is not valid for device $VDISK_DEVICE_ID at $_url (403)"
                    return 1
                    ;;
                404)
                    vdisk_unassigned "$_url"
                    return 1
                    ;;
                000) _last="$_url: $(head -c 300 "$VDISK_RUN/curl.err" | tr '\n' ' ')" ;;
                *) _last="$_url answered HTTP $_code" ;;
            esac
        done
        if [ "$(cut -d. -f1 /proc/uptime)" -ge "$_deadline" ]; then
            vdisk_fail api "no boot record from the storage API within ${VDISK_TIMEOUT}s: $_last"
            return 1
        fi
        sleep 2
    done
}

# No assignment: stop (the default), or boot the image without a vDisk when
# the admin chose rd.vdisk.unassigned=continue.
vdisk_unassigned() {
    if [ "$VDISK_UNASSIGNED" = continue ]; then
        vdisk_forget_secrets
        vdisk_status unassigned api "no vDisk is assigned to device $VDISK_DEVICE_ID"
        vdisk_say "WARNING: no vDisk is assigned to device $VDISK_DEVICE_ID (404 from $1): booting the image as it is, nothing written survives a reboot (rd.vdisk.unassigned=continue)"
        return 0
    fi
    vdisk_fail unassigned "no vDisk is assigned to device $VDISK_DEVICE_ID (404 from $1); assign one, or boot with rd.vdisk.unassigned=continue"
}

vdisk_login() {
    modprobe -q iscsi_tcp 2> /dev/null
    modprobe -q sd_mod 2> /dev/null
    _errors=
    for _portal in $VDISK_PORTALS; do
        _ip=${_portal%:*}
        _ip=${_ip#[}
        _ip=${_ip%]}
        # Secrets go to iscsistart as arguments: nothing else runs in the
        # initramfs to read them, and they are never logged.
        set -- -i "$VDISK_INITIATOR_IQN" -t "$VDISK_TARGET_IQN" -g "$VDISK_TPG" \
            -a "$_ip" -p "${_portal##*:}" \
            -P "node.session.timeo.replacement_timeout=$VDISK_REPLACEMENT_TIMEOUT" \
            -P "node.conn[0].timeo.noop_out_interval=$VDISK_CONF_NOOP_INTERVAL" \
            -P "node.conn[0].timeo.noop_out_timeout=$VDISK_CONF_NOOP_TIMEOUT"
        [ -n "$VDISK_CHAP_USER" ] && set -- "$@" -u "$VDISK_CHAP_USER" -w "$VDISK_CHAP_PASS"
        [ -n "$VDISK_CHAP_MUTUAL_USER" ] && set -- "$@" -U "$VDISK_CHAP_MUTUAL_USER" -W "$VDISK_CHAP_MUTUAL_PASS"
        if _out=$(iscsistart "$@" 2>&1); then
            set --
            VDISK_PORTAL=$_portal
            vdisk_say "logged in to $VDISK_TARGET_IQN at $_portal as $VDISK_INITIATOR_IQN"
            return 0
        fi
        set --
        _errors="$_errors $_portal: $(echo "$_out" | grep -v '^$' | tail -n 2 | tr '\n' ' ')"
    done
    vdisk_fail login "the target refused or did not answer the login:$_errors"
}

vdisk_wait_disk() {
    VDISK_DISK=$(vdisk_naa_link "$VDISK_WWN")
    while :; do
        udevadm settle --timeout=5 > /dev/null 2>&1
        [ -b "$VDISK_DISK" ] && break
        if [ "$(cut -d. -f1 /proc/uptime)" -ge "$_deadline" ]; then
            vdisk_fail disk "logged in, but no disk with unit serial $VDISK_WWN ($VDISK_DISK) appeared within ${VDISK_TIMEOUT}s: is LUN $VDISK_LUN mapped to $VDISK_INITIATOR_IQN?"
            return 1
        fi
        sleep 1
    done
    # Partitions appear after the disk: wait for each one the mounts name.
    for _m in $VDISK_MOUNTS; do
        _dev=$(vdisk_part_dev "$VDISK_DISK" "${_m%%:*}")
        while [ ! -b "$_dev" ]; do
            if [ "$(cut -d. -f1 /proc/uptime)" -ge "$_deadline" ]; then
                vdisk_fail disk "the vDisk has no partition ${_m%%:*} ($_dev)"
                return 1
            fi
            udevadm settle --timeout=5 > /dev/null 2>&1
            sleep 1
        done
    done
    return 0
}

# Mounts in record order (parents first) under the staging tmpfs, which is
# private so that pre-pivot can bind the mounts into the new root.
vdisk_mount_all() {
    mkdir -p "$VDISK_STAGE"
    if ! mountpoint -q "$VDISK_STAGE" 2> /dev/null; then
        mount -t tmpfs -o mode=0700,size=1m clusterducks-stage "$VDISK_STAGE"
        mount --make-private "$VDISK_STAGE"
    fi
    _ro=
    [ "$VDISK_READONLY" = 1 ] && _ro=ro
    for _m in $VDISK_MOUNTS; do
        _dev=$(vdisk_part_dev "$VDISK_DISK" "${_m%%:*}")
        _dir="$VDISK_STAGE/${_m#*:}"
        _fs=$(blkid -o value -s TYPE "$_dev")
        case "$_fs" in
            xfs | ext4 | ext3 | btrfs) ;;
            "")
                vdisk_fail mount "$_dev (mount /${_m#*:}) has no filesystem: make one first (mkfs.xfs)"
                return 1
                ;;
            *)
                vdisk_fail mount "$_dev (mount /${_m#*:}) holds $_fs; xfs, ext4 or btrfs are supported"
                return 1
                ;;
        esac
        mkdir -p "$_dir"
        if ! _out=$(mount -t "$_fs" -o "${_ro:-rw}" "$_dev" "$_dir" 2>&1); then
            vdisk_fail mount "cannot mount $_dev ($_fs) for /${_m#*:}: $_out"
            return 1
        fi
        vdisk_say "mounted $_fs from $_dev for /${_m#*:}"
    done
    return 0
}

if getargbool 1 rd.vdisk && [ ! -e "$VDISK_RUN/vdisk.status" ]; then
    # rd.debug traces hooks with set -x: not this one, it handles the token
    # and the CHAP secrets.
    case $- in *x*) _vdisk_xtrace=1 && set +x ;; *) _vdisk_xtrace= ;; esac
    vdisk_attach || :
    vdisk_forget_secrets
    if [ -n "$_vdisk_xtrace" ]; then set -x; fi
fi
