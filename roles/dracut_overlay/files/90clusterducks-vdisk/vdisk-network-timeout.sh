#!/bin/sh
# initqueue/timeout hook: the initqueue gave up, most likely on the network.
# shellcheck source=vdisk-lib.sh
command -v vdisk_load_config > /dev/null || . /lib/clusterducks-vdisk-lib.sh

getargbool 1 rd.vdisk || return 0
[ -e "$VDISK_RUN/vdisk.status" ] && return 0
for _f in /tmp/net.*.did-setup; do
    [ -e "$_f" ] && return 0
done
vdisk_load_config
vdisk_fail network "the storage network did not come up (check ip= on the kernel command line and the link)"
