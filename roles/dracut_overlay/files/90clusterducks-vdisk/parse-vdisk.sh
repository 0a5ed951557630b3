#!/bin/sh
# cmdline hook: read the settings, ask for the network, or step aside (rd.vdisk=0).
# shellcheck source=vdisk-lib.sh
command -v vdisk_load_config > /dev/null || . /lib/clusterducks-vdisk-lib.sh

vdisk_mark start
if ! getargbool 1 rd.vdisk; then
    vdisk_status disabled "" "rd.vdisk=0 on the kernel command line"
    vdisk_say "disabled by rd.vdisk=0: booting the image without a vDisk"
    return 0
fi

vdisk_load_config
if ! _problem=$(vdisk_check_config); then
    # A configuration error is a failure like any other (policy applies).
    echo "$_problem" > "$VDISK_RUN/config-error"
fi
case "$VDISK_TOKEN_SOURCE" in cmdline:*)
    vdisk_say "WARNING: the device token is on the kernel command line, readable by every user in /proc/cmdline"
    ;;
esac
# The storage network must come up (network-legacy, from ip=).
echo "rd.neednet=1" > /etc/cmdline.d/90clusterducks-vdisk.conf
