"""A VM of a lab: its definition (vm.json, root overlay, disks) and its qemu
process (start, clean power-off, power-cut)."""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time

from .common import LabError, log, rules, write_json
from .console import console_tail, console_text
from .image import image_ready
from .net import FIRST_HOST, STORAGE_NET, free_port, port_is_free
from .qemu import qemu_command
from .refs import record_state_root
from .ssh import ssh_command, ssh_ok, ssh_probe


# A clean power-off takes seconds under KVM and 10-20 s under TCG, but a
# TCG guest on a busy host can stall for 30-40 s at a time (CI saw it): the
# bound must catch a hang, not a slow host. What makes a shutdown unclean is
# read from the console (stop_all reports the units systemd waited on).
STOP_TIMEOUT = 180
ACPI_GRACE = 60


def parse_size(text):
    """'8G' -> bytes, by the collection's own size rule (rules.py): K/M/G/T binary, KB/MB/GB/TB decimal."""
    try:
        return rules.parse_size(text, "size")
    except rules.RuleError as exc:
        raise LabError(str(exc))


class VM:
    def __init__(self, lab, name):
        if not name or not all(c.isalnum() or c == "-" for c in name):
            raise LabError("invalid VM name %r (letters, digits and '-')" % name)
        self.lab = lab
        self.name = name
        self.path = os.path.join(lab.path, name)
        self.conf_path = os.path.join(self.path, "vm.json")

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def exists(self):
        return os.path.exists(self.conf_path)

    @property
    def conf(self):
        with open(self.conf_path) as f:
            return json.load(f)

    def save_conf(self, conf):
        write_json(self.conf_path, conf)
        # Its image (a qcow2 backing file) must outlive any prune of the cache.
        record_state_root()

    def define(self, image, memory, cpus, disks, ephemeral, storage_ip, forwards=(),
               kernel_args=(), smbios_files=(), hostname=True):
        """Create the VM's files once; an existing VM keeps its definition.

        kernel_args and smbios_files come from files, so that a secret in them
        (a device token) never appears on a command line.
        """
        if self.exists:
            return self.conf
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        index = self.lab.meta["next_index"]
        self.lab.meta["next_index"] = index + 1
        self.lab.save()
        conf = {
            "name": self.name,
            "index": index,
            "image": image,
            "memory": memory,
            "cpus": cpus,
            "disks": [parse_size(d) for d in disks],
            "ephemeral": ephemeral,
            "storage_ip": storage_ip or "%s.%d" % (STORAGE_NET, FIRST_HOST + index),
            "ssh_port": free_port(),
            # guest TCP port -> 127.0.0.1 port on the host (for services under test)
            "forwards": {str(p): free_port() for p in forwards},
            "kernel_args": list(kernel_args),
            "smbios": [],
            "hostname": hostname,
        }
        for n, path in enumerate(smbios_files):
            with open(path, "rb") as f:
                data = f.read().rstrip(b"\n")
            dest = self.file("smbios-%d.txt" % n)
            with open(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(data)
            conf["smbios"].append(os.path.basename(dest))
        self.make_root(image)
        for n, size in enumerate(conf["disks"], 1):
            with open(self.file("disk%d.raw" % n), "wb") as f:
                f.truncate(size)  # sparse: costs nothing until written
        self.save_conf(conf)
        return conf

    def make_root(self, image):
        """A copy-on-write root disk over the image's rootfs.img."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.file("root.qcow2"))
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
             "-b", os.path.join(image, "rootfs.img"), self.file("root.qcow2")],
            check=True,
        )

    def set_image(self, image):
        """Move a stopped VM to another image (a new golden image version).
        Its root disk starts over; its extra disks are kept."""
        if self.running:
            raise LabError("%s is running: stop it before moving it to another image" % self.name)
        if not image_ready(image):
            raise LabError("%s is not a lab image directory" % image)
        conf = self.conf
        conf["image"] = image
        self.make_root(image)
        self.save_conf(conf)

    # -- process ------------------------------------------------------------

    @property
    def pid(self):
        try:
            with open(self.file("qemu.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    @property
    def running(self):
        return self.pid is not None

    def qemu_command(self, accel):
        return qemu_command(self.conf, self.path, self.lab.mcast_port, accel)

    def start(self, accel):
        if self.running:
            return False
        conf = self.conf
        if not port_is_free(conf["ssh_port"]):
            conf["ssh_port"] = free_port()
        for guest, host in conf.get("forwards", {}).items():
            if not port_is_free(host):
                conf["forwards"][guest] = free_port()
        self.save_conf(conf)
        # A console log per boot: keep the previous one for post-mortems.
        if os.path.exists(self.file("console.log")):
            os.replace(self.file("console.log"), self.file("console.log.prev"))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.file("qmp.sock"))
        cmd = self.qemu_command(accel)
        with open(self.file("qemu.cmdline"), "w") as f:
            f.write(" ".join(cmd) + "\n")
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LabError("qemu failed to start %s: %s" % (self.name, result.stderr.strip()))
        self.started_at = time.monotonic()
        return True

    def qmp(self, command):
        """Send one QMP command; returns False when the monitor is not there."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(self.file("qmp.sock"))
                f = s.makefile("rw")
                f.readline()  # greeting
                for msg in ({"execute": "qmp_capabilities"}, {"execute": command}):
                    f.write(json.dumps(msg) + "\n")
                    f.flush()
                    f.readline()
                return True
        except OSError:
            return False

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                return True
            time.sleep(0.5)
        return not self.running

    def kill(self):
        """Hard power-cut: the qemu process dies, the guest gets no warning."""
        pid = self.pid
        if pid:
            os.kill(pid, signal.SIGKILL)
            self.wait_exit(10)
        return pid is not None

    def stop(self, timeout=None):
        """Clean shutdown through ACPI; a power-cut if the guest ignores it."""
        return stop_all([self], timeout or STOP_TIMEOUT) == [self]

    # -- access -------------------------------------------------------------

    def ssh_command(self, args=()):
        return ssh_command(self.conf, args)

    def ssh_ok(self):
        return ssh_ok(self.conf)

    def ssh_probe(self):
        return ssh_probe(self.conf)

    def ssh_run(self, argv, timeout=30):
        """Run a command over SSH; its stripped output, or None if it could not run."""
        try:
            result = subprocess.run(self.ssh_command(argv), capture_output=True, text=True, check=False,
                                    stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return result.stdout.strip() if result.returncode != 255 else None

    def describe(self):
        conf = self.conf
        return {
            "name": self.name,
            "running": self.running,
            "ssh_host": "127.0.0.1",
            "ssh_port": conf["ssh_port"],
            "ssh_user": "root",
            "ssh_key": os.path.join(conf["image"], "id_ed25519"),
            "storage_ip": conf["storage_ip"],
            "forwards": {int(g): h for g, h in conf.get("forwards", {}).items()},
            "ephemeral": conf["ephemeral"],
            "disks": ["/dev/disk/by-id/virtio-cdlab-disk%d" % n
                      for n in range(1, len(conf["disks"]) + 1)],
            "console_log": self.file("console.log"),
        }


# What systemd prints while a unit holds the shutdown up.
STOP_JOB = re.compile(r"A stop job is running for (.+?) \(\d")


def shutdown_report(vm):
    """What the console of VM's last shutdown says: the units systemd waited
    on ('A stop job is running for ...'), and the console's last lines."""
    text = console_text(vm)
    waited = sorted(set(m.group(1).strip() for m in STOP_JOB.finditer(text)))
    return waited, console_tail(vm)


def stop_all(vms, timeout=STOP_TIMEOUT):
    """Clean ACPI power-off of several VMs at once; a power-cut for any that
    ignores it. Logs how long each took and any unit the shutdown waited on
    (so a slow power-off names its cause); returns the VMs that were running.

    The power button is systemd-logind's to handle: a guest whose logind has
    not started yet (its boot is still finishing on a starved TCG host) drops
    the press. A guest that is still not shutting down after ACPI_GRACE is
    asked over SSH (systemctl poweroff: the same clean shutdown), and the log
    says so."""
    running = [vm for vm in vms if vm.running]
    started = time.monotonic()
    for vm in running:
        vm.qmp("system_powerdown")
    for vm in running:
        exited = vm.wait_exit(max(1, ACPI_GRACE - (time.monotonic() - started)))
        if not exited:
            state = vm.ssh_run(["systemctl", "is-system-running"])
            if state != "stopping":
                log("%s ignored the ACPI power button (system state: %s): systemctl poweroff over SSH"
                    % (vm.name, state or "no answer"))
                vm.ssh_run(["systemctl", "--no-block", "poweroff"])
            exited = vm.wait_exit(max(1, timeout - (time.monotonic() - started)))
        waited, tail = shutdown_report(vm)
        if exited:
            log("%s powered off in %.1f s" % (vm.name, time.monotonic() - started))
        else:
            log("%s did not power off in %d s: killing it; its console's last lines:\n  %s"
                % (vm.name, timeout, "\n  ".join(tail)))
            vm.kill()
        if waited:
            log("%s: shutdown waited on: %s" % (vm.name, "; ".join(waited)))
    return running
