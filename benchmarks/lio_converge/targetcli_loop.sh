#!/usr/bin/env bash
# The baseline: the same objects made with one targetcli call per object
# (backstore, target, LUN, ACL), as Ansible roles that shell out to targetcli
# do. targetcli saves the whole configuration as it exits, as it does by default.
# Usage: targetcli_loop.sh PREFIX FIRST LAST   (runs on the storage host)
# Prints: calls=N seconds=S
set -euo pipefail
prefix=$1 first=$2 last=$3
dir=/srv/targetcli-baseline
mkdir -p "$dir"
start=$(date +%s.%N)
calls=0
for i in $(seq "$first" "$last"); do
    n=$(printf '%s%03d' "$prefix" "$i")
    iqn=iqn.2026-11.io.clusterducks.bench:$n
    targetcli /backstores/fileio create name="$n" file_or_dev="$dir/$n.img" size=64M write_back=false >/dev/null
    targetcli /iscsi create "$iqn" >/dev/null
    targetcli "/iscsi/$iqn/tpg1/luns" create "/backstores/fileio/$n" >/dev/null
    targetcli "/iscsi/$iqn/tpg1/acls" create "iqn.2026-11.io.clusterducks.bench:device-$n" >/dev/null
    calls=$((calls + 4))
done
end=$(date +%s.%N)
awk -v c="$calls" -v s="$start" -v e="$end" 'BEGIN { printf "calls=%d seconds=%.1f\n", c, e - s }'
