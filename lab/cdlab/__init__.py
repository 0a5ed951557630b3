"""cdlab: the clusterducks.vdisk VM lab.

Boots Debian 12 VMs under qemu so that everything needing a real kernel (LIO,
the iSCSI initiator, dracut, an overlayfs root, a boot) is tested for real.
Run it as `python3 lab/cdlab --lab NAME COMMAND ...` (or `python3 -m cdlab`
with lab/ on PYTHONPATH); `import cdlab` gives the names re-exported below.

Layout:
  image cache  $CDLAB_CACHE (default /var/cache/clusterducks-lab)/images/<hash>/
               keyed by a hash of lab/image/, shared by every checkout and CI run
  lab state    $CDLAB_STATE (default <repo>/.lab)/<lab>/
               lab.json, and <vm>/ with vm.json, root.qcow2, disk*.raw,
               console.log, qemu.pid, qmp.sock

Every VM has two NICs: eth0, qemu user-mode networking restricted to an SSH
port-forward on 127.0.0.1 (management), and eth1 on the lab's private storage
network, a qemu multicast socket bound to 127.0.0.1 (never the host's network).

One job per module:
  cli        the command line: argparse and dispatch
  commands   what each command does
  common     paths, errors, logging, the flock, atomic JSON
  lab        a lab: its VMs, lab.json, its lock
  vm         a VM: definition, root overlay, qemu process
  qemu       a VM's qemu command line
  accel      KVM or TCG
  net        storage network addresses, 127.0.0.1 ports
  ssh        SSH into the VMs, waiting for it
  console    waiting for a console line
  inventory  the Ansible inventory of the running VMs
  image      the lab image: built, cached by recipe hash, pruned
  refs       which cached images defined VMs still use (any state dir)
  golden     golden images: a playbook run into a copy of an image

Only the standard library is used: this runs before the virtualenv exists.
"""

from .accel import detect_accel
from .cli import main
from .commands import boot, define_vms, select
from .common import (IMAGE_RECIPE, LAB_DIR, REPO, LabError, cache_dir, locked, log,
                     state_root, write_json)
from .console import wait_console
from .golden import build_golden, collections_dir, golden_key, tree_hash
from .image import IMAGE_FILES, ensure_image, image_dir, image_ready, prune_images, recipe_hash
from .inventory import dump_yaml, inventory, write_inventory
from .lab import Lab
from .net import FIRST_HOST, STORAGE_MCAST_GROUP, STORAGE_NET, free_port, port_is_free
from .qemu import qemu_command
from .refs import images_in_use, qcow2_backing_file, record_state_root, state_roots
from .ssh import SSH_OPTS, ssh_command, ssh_ok, wait_for_ssh
from .vm import VM, parse_size, stop_all

__all__ = [
    "FIRST_HOST", "IMAGE_FILES", "IMAGE_RECIPE", "LAB_DIR", "REPO", "SSH_OPTS",
    "STORAGE_MCAST_GROUP", "STORAGE_NET", "VM", "boot", "build_golden", "cache_dir",
    "collections_dir", "define_vms", "detect_accel", "dump_yaml", "ensure_image", "free_port",
    "golden_key", "image_dir", "image_ready", "images_in_use", "inventory", "Lab", "LabError",
    "locked", "log", "main", "parse_size", "port_is_free", "prune_images",
    "qcow2_backing_file", "qemu_command", "recipe_hash", "record_state_root", "select",
    "ssh_command", "ssh_ok", "state_root", "state_roots", "stop_all", "tree_hash",
    "wait_console", "wait_for_ssh", "write_inventory", "write_json"
]
