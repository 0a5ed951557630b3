#!/usr/bin/env bash
# make demo: a lab storage host, a golden image, and a device that boots it from
# a non-persistent root with its vDisk overlay, sets its hostname and writes a
# Puppet-style agent key, reboots (its root starts over) and still has both.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
cdlab() { python3 lab/cdlab --lab demo "$@"; }
say() { printf '\n\033[1m== %s\033[0m  (%ds)\n' "$*" "$SECONDS"; }
on() { cdlab ssh node01 "$@"; }
export ANSIBLE_COLLECTIONS_PATH
ANSIBLE_COLLECTIONS_PATH=$(python3 -c 'import sys; sys.path.insert(0, "lab"); import cdlab; print(cdlab.collections_dir())')
export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_NOCOLOR=1
tls=$(lab/lab-tls.sh)
secrets=$repo/.lab/demo-secrets

say "Storage host: boot the lab VM"
cdlab up storage --disk 4G --forward 8443 --memory 1536 > /dev/null
port=$(cdlab status | python3 -c 'import json,sys; print([v for v in json.load(sys.stdin) if v["name"]=="storage"][0]["forwards"]["8443"])')

say "Storage host: pool, LIO, API; node01: vDisk, target, assignment, token (clusterducks.vdisk.storage_host + provision_device)"
.venv/bin/ansible-playbook -i .lab/demo/inventory.yml lab/demo/site.yml \
    -e "lab_tls_dir=$tls" -e "api_port=$port" -e "secrets_dir=$secrets" | grep -E '^(PLAY \[|fatal|failed)|storage +:|localhost +:' || true

say "Golden image: the lab image + clusterducks.vdisk.golden_image (cached by content)"
golden=$(python3 lab/cdlab golden playbooks/golden_image.yml --extra-vars lab/demo/golden-vars.yml --input "$tls/ca.crt" 2> .lab/demo-golden.log)
echo "$golden"

say "node01: boot the golden image from a non-persistent root; id and token as SMBIOS OEM strings"
cdlab destroy node01 > /dev/null 2>&1 || true
cdlab define node01 --image "$golden" --ephemeral --no-hostname --memory 768 --cpus 1 \
    --smbios-file "$secrets/node01.smbios-device" --smbios-file "$secrets/node01.smbios-token" > /dev/null
cdlab start node01
# shellcheck disable=SC2016 # expanded on node01, not here
show() {
    on 'echo "root:         $(findmnt -no SOURCE,FSTYPE,OPTIONS /)"
        echo "vDisk:        $(findmnt -no SOURCE,FSTYPE,TARGET /data)  ($(cat /run/clusterducks/vdisk.status))"
        echo "image name:   $(cat /run/clusterducks/lower/etc/hostname)   device name: $(hostname)"
        echo "SSH host key: $(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)"
        echo "machine-id:   $(cat /etc/machine-id)"
        if [ -e /etc/puppetlabs/puppet/ssl/private_keys/node01.pem ]; then
            echo "agent key:    $(sha256sum /etc/puppetlabs/puppet/ssl/private_keys/node01.pem | cut -d" " -f1)"
        else echo "agent key:    (none yet)"; fi
        echo "boot phases:  $(tr "\n" " " < /run/clusterducks/timing)"'
}
show

say "node01 makes itself individual: hostname, Puppet-style agent key"
on 'hostnamectl set-hostname node01
    install -d -m 0750 /etc/puppetlabs/puppet/ssl/private_keys
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out /etc/puppetlabs/puppet/ssl/private_keys/node01.pem
    sync; echo "hostname and key written"'

say "Reboot node01: a new qemu process, its root disk starts over from the image"
cdlab reboot node01
show

say "Done in ${SECONDS}s. node01 kept its name, key, host key and machine-id on its vDisk; the image has none of them."
echo "Reach it:  python3 lab/cdlab --lab demo ssh node01      Stop the demo: make demo-down"
