"""What each cdlab command does. The cli module parses the arguments and
calls these."""

import json
import os
import shutil
import sys

from .accel import detect_accel
from .common import LabError, log, state_root
from .console import wait_console
from .golden import build_golden
from .image import ensure_image, image_ready, prune_images
from .inventory import write_inventory
from .lab import Lab
from .ssh import wait_for_ssh
from .vm import stop_all


def cmd_image(args):
    path = ensure_image(rebuild=args.rebuild, variant=args.variant)
    if args.prune:
        prune_images(keep=path)
    print(path)


def select(lab, names):
    vms = [lab.vm(n) for n in names] if names else lab.vms()
    missing = [vm.name for vm in vms if not vm.exists]
    if missing:
        raise LabError("no such VM in lab %s: %s" % (lab.name, ", ".join(missing)))
    return vms


def boot(lab, vms, timeout):
    accel = detect_accel(vms[0].conf["image"])
    started = [vm for vm in vms if vm.start(accel)]
    took = wait_for_ssh(vms, timeout)
    for vm in started:
        log("%s: SSH after %.1f s (%s)" % (vm.name, took[vm.name], accel))
    write_inventory(lab)
    return took


def define_vms(args):
    lab = Lab(args.lab)
    image = os.path.abspath(args.image) if args.image else ensure_image()
    if not image_ready(image):
        raise LabError("%s is not a lab image directory (cdlab image / cdlab golden)" % image)
    kernel_args = list(args.kernel_arg)
    if args.kernel_args_file:
        with open(args.kernel_args_file) as f:
            kernel_args += f.read().split()
    with lab.lock():
        vms = []
        for name in args.names:
            vm = lab.vm(name)
            vm.define(image, args.memory, args.cpus, args.disk, args.ephemeral,
                      args.storage_ip if len(args.names) == 1 else None, args.forward,
                      kernel_args, args.smbios_file, not args.no_hostname)
            vms.append(vm)
    return lab, vms


def cmd_golden(args):
    base = os.path.abspath(args.base) if args.base else ensure_image()
    print(build_golden(base, os.path.abspath(args.playbook), args.extra_vars, args.input))


def cmd_set_image(args):
    lab = Lab(args.lab)
    with lab.lock():
        for vm in select(lab, args.names):
            vm.set_image(os.path.abspath(args.image))
            log("%s now boots %s" % (vm.name, args.image))


def cmd_wait_console(args):
    """Wait until a VM's console shows a line matching a pattern (or it stops)."""
    vm = select(Lab(args.lab), [args.name])[0]
    print(wait_console(vm, args.pattern, args.timeout))


def cmd_define(args):
    """Define VMs without booting them (each may have its own options)."""
    vms = define_vms(args)[1]
    print(json.dumps([vm.describe() for vm in vms], indent=2))


def cmd_up(args):
    lab, vms = define_vms(args)
    with lab.lock():
        took = boot(lab, vms, args.timeout)
    print(json.dumps([dict(vm.describe(), boot_seconds=round(took.get(vm.name, 0), 1))
                      for vm in vms], indent=2))


def cmd_start(args):
    lab = Lab(args.lab)
    with lab.lock():
        vms = select(lab, args.names)
        if args.no_wait:
            accel = detect_accel(vms[0].conf["image"])
            for vm in vms:
                vm.start(accel)
            return
        boot(lab, vms, args.timeout)


def cmd_stop(args):
    lab = Lab(args.lab)
    with lab.lock():
        # One stop_all for all the VMs: they power off in parallel.
        stop_all(select(lab, args.names), args.timeout)
        write_inventory(lab)


def cmd_kill(args):
    lab = Lab(args.lab)
    with lab.lock():
        for vm in select(lab, args.names):
            if vm.kill():
                log("%s power-cut" % vm.name)
        write_inventory(lab)


def cmd_reboot(args):
    """A new qemu process, so an ephemeral root really starts over."""
    lab = Lab(args.lab)
    # Power-off and boot under one lock: no other command runs in between.
    with lab.lock():
        vms = select(lab, args.names)
        stop_all(vms)
        boot(lab, vms, args.timeout)


def cmd_destroy(args):
    lab = Lab(args.lab)
    logs = os.path.join(state_root(), "logs", lab.name)
    # The lock file is in the lab's directory: removing the directory removes
    # it while held, which locked() handles for whoever waits.
    with lab.lock():
        for vm in select(lab, args.names):
            vm.kill()
            # Console logs outlive the VM: they are what a failed run leaves to read.
            for name in ("console.log.prev", "console.log"):
                if os.path.exists(vm.file(name)):
                    os.makedirs(logs, exist_ok=True)
                    shutil.copyfile(vm.file(name), os.path.join(logs, "%s.%s" % (vm.name, name)))
            shutil.rmtree(vm.path)
            log("%s destroyed (console log kept in %s)" % (vm.name, logs))
        if not lab.vms() and os.path.isdir(lab.path):
            shutil.rmtree(lab.path)
        elif os.path.isdir(lab.path):
            write_inventory(lab)


def cmd_status(args):
    lab = Lab(args.lab)
    print(json.dumps([vm.describe() for vm in lab.vms()], indent=2))


def cmd_console(args):
    vm = select(Lab(args.lab), [args.name])[0]
    path = vm.file("console.log.prev" if args.previous else "console.log")
    if args.output:
        shutil.copyfile(path, args.output)
    else:
        with open(path, "rb") as f:
            sys.stdout.buffer.write(f.read())


def cmd_ssh(args):
    vm = select(Lab(args.lab), [args.name])[0]
    os.execvp("ssh", vm.ssh_command(args.command))


def cmd_inventory(args):
    print(write_inventory(Lab(args.lab), args.output))
