#!/bin/sh
# Let the storage API's group read LIO's save file, and nobody else: run by
# vdisk-api-lio-access.path whenever the file changes, because targetcli's
# saveconfig (rtslib's save_to_file) always writes it back root:root 0600.
# Usage: lio-save-access.sh SAVE_FILE GROUP
set -eu
file=$1 group=$2
dir=$(dirname "$file")
[ -f "$file" ] || exit 0
# targetcli saveconfig also takes the search bit off the directory (0600):
# the group needs it to reach the file, nobody else needs to list it.
if [ "$(stat -c '%G %a' "$dir")" != "$group 710" ]; then
    chgrp "$group" "$dir"
    chmod 0710 "$dir"
    echo "$dir: group $group may search it again (root:$group 0710)"
fi
# Changing nothing when nothing is wrong: chgrp/chmod would fire the path unit again.
[ "$(stat -c '%G %a' "$file")" = "$group 640" ] && exit 0
chgrp "$group" "$file"
chmod 0640 "$file"
echo "$file: group $group may read it again (root:$group 0640)"
