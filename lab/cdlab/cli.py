"""The command line: argparse, dispatch to the commands module, errors."""

import argparse
import os
import subprocess
import sys

from .commands import (cmd_console, cmd_define, cmd_destroy, cmd_golden, cmd_image,
                       cmd_inventory, cmd_kill, cmd_reboot, cmd_set_image, cmd_ssh,
                       cmd_start, cmd_status, cmd_stop, cmd_up, cmd_wait_console)
from .common import LabError
from .net import STORAGE_NET
from .vm import STOP_TIMEOUT

DESCRIPTION = "cdlab: the clusterducks.vdisk VM lab."


def main(argv=None):
    p = argparse.ArgumentParser(prog="cdlab", description=DESCRIPTION)
    p.add_argument("--lab", default=os.environ.get("CDLAB_LAB", "default"),
                   help="lab name: VMs of one lab share a storage network (default: %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("image", help="build (or find cached) the VM image; print its directory")
    s.add_argument("--rebuild", action="store_true")
    s.add_argument("--prune", action="store_true", help="delete every other cached image")
    s.add_argument("--variant", help="the lab image plus lab/image/variants/VARIANT.txt (e.g. backends)")
    s.set_defaults(func=cmd_image)

    for name, func, helptext in (
        ("up", cmd_up, "define and boot VMs (in parallel), wait for SSH"),
        ("define", cmd_define, "define VMs (disks, options) without booting them"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("names", nargs="+")
        s.add_argument("--memory", type=int, default=1024, help="MiB (default: %(default)s)")
        s.add_argument("--cpus", type=int, default=2)
        s.add_argument("--disk", action="append", default=[],
                       help="an extra blank disk of this size (repeatable), "
                            "seen as /dev/disk/by-id/virtio-cdlab-diskN")
        s.add_argument("--ephemeral", action="store_true",
                       help="non-persistent root disk: writes are lost at power-off")
        s.add_argument("--storage-ip", help="eth1 address (default: %s.<11+n>)" % STORAGE_NET)
        s.add_argument("--forward", type=int, action="append", default=[], metavar="GUEST_PORT",
                       help="also forward this guest TCP port to a free 127.0.0.1 port (repeatable)")
        s.add_argument("--timeout", type=int, default=300)
        s.add_argument("--image", help="boot this image directory (a golden image) instead of the lab image")
        s.add_argument("--kernel-arg", action="append", default=[], help="an extra kernel argument (repeatable)")
        s.add_argument("--kernel-args-file", help="extra kernel arguments read from this file")
        s.add_argument("--smbios-file", action="append", default=[],
                       help="an SMBIOS OEM string (type 11) read from this file (repeatable); root-only in the guest")
        s.add_argument("--no-hostname", action="store_true",
                       help="no systemd.hostname= on the kernel command line (devices find their own)")
        s.set_defaults(func=func)

    s = sub.add_parser("golden", help="build (or find cached) a golden image: a playbook run into a copy of an image")
    s.add_argument("playbook")
    s.add_argument("--base", help="the image to start from (default: the lab image)")
    s.add_argument("--extra-vars", action="append", default=[], help="a vars file for the playbook (repeatable)")
    s.add_argument("--input", action="append", default=[],
                   help="a further file or directory whose content goes into the image (part of the cache key)")
    s.set_defaults(func=cmd_golden)

    s = sub.add_parser("set-image", help="move stopped VMs to another image (their root disk starts over)")
    s.add_argument("image")
    s.add_argument("names", nargs="+")
    s.set_defaults(func=cmd_set_image)

    s = sub.add_parser("wait-console", help="wait for a console line matching a regular expression")
    s.add_argument("name")
    s.add_argument("pattern")
    s.add_argument("--timeout", type=int, default=300)
    s.set_defaults(func=cmd_wait_console)

    for name, func, helptext in (
        ("start", cmd_start, "boot stopped VMs and wait for SSH"),
        ("reboot", cmd_reboot, "clean power-off, then a fresh boot"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("names", nargs="*")
        s.add_argument("--timeout", type=int, default=300)
        s.add_argument("--no-wait", action="store_true", help="do not wait for SSH (a boot that should stop early)")
        s.set_defaults(func=func)

    s = sub.add_parser("stop", help="clean ACPI power-off (power-cut after --timeout)")
    s.add_argument("names", nargs="*")
    s.add_argument("--timeout", type=int, default=STOP_TIMEOUT)
    s.set_defaults(func=cmd_stop)

    for name, func, helptext in (
        ("kill", cmd_kill, "hard power-cut: kill the qemu process"),
        ("destroy", cmd_destroy, "power-cut and delete VMs (all of the lab's if none named)"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("names", nargs="*")
        s.set_defaults(func=func)

    s = sub.add_parser("status", help="the lab's VMs as JSON")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("console", help="print (or copy) a VM's serial console log")
    s.add_argument("name")
    s.add_argument("--previous", action="store_true", help="the boot before the current one")
    s.add_argument("--output")
    s.set_defaults(func=cmd_console)

    s = sub.add_parser("ssh", help="SSH into a VM (optionally run a command)")
    s.add_argument("name")
    s.add_argument("command", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_ssh)

    s = sub.add_parser("inventory", help="write an Ansible inventory of the running VMs")
    s.add_argument("--output")
    s.set_defaults(func=cmd_inventory)

    args = p.parse_args(argv)
    try:
        args.func(args)
    except LabError as e:
        print("cdlab: error: %s" % e, file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print("cdlab: error: %s" % e, file=sys.stderr)
        return 1
    return 0
