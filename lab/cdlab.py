"""cdlab: the clusterducks.vdisk VM lab.

Boots Debian 12 VMs under qemu so that everything needing a real kernel (LIO,
the iSCSI initiator, dracut, an overlayfs root, a boot) is tested for real.

Layout:
  image cache  $CDLAB_CACHE (default /var/cache/clusterducks-lab)/images/<hash>/
               keyed by a hash of lab/image/, shared by every checkout and CI run
  lab state    $CDLAB_STATE (default <repo>/.lab)/<lab>/
               lab.json, and <vm>/ with vm.json, root.qcow2, disk*.raw,
               console.log, qemu.pid, qmp.sock

Every VM has two NICs: eth0, qemu user-mode networking restricted to an SSH
port-forward on 127.0.0.1 (management), and eth1 on the lab's private storage
network, a qemu multicast socket bound to 127.0.0.1 (never the host's network).

Only the standard library is used: this runs before the virtualenv exists.
"""

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
IMAGE_RECIPE = os.path.join(HERE, "image")

STORAGE_NET = "10.77.0"  # /24, private to the lab's multicast hub
STORAGE_MCAST_GROUP = "230.77.0.1"
FIRST_HOST = 11  # VM n gets STORAGE_NET.(FIRST_HOST + n)
SSH_OPTS = [
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=5",
]


class LabError(Exception):
    """A failure the user can act on; printed without a traceback."""


def cache_dir():
    return os.environ.get("CDLAB_CACHE", "/var/cache/clusterducks-lab")


def state_root():
    return os.environ.get("CDLAB_STATE", os.path.join(REPO, ".lab"))


def log(msg):
    print("cdlab: %s" % msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# The image: built from Debian packages, cached by a hash of its recipe.

def recipe_hash(recipe_dir=IMAGE_RECIPE):
    """Hash of every file under the recipe: path, executable bit and content."""
    digest = hashlib.sha256()
    for top, dirs, files in os.walk(recipe_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(top, name)
            rel = os.path.relpath(path, recipe_dir)
            mode = "x" if os.access(path, os.X_OK) else "-"
            digest.update(("%s\0%s\0" % (rel, mode)).encode())
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:16]


IMAGE_FILES = ("rootfs.img", "vmlinuz", "initrd.img", "id_ed25519", "manifest.txt")


def image_dir(key=None):
    return os.path.join(cache_dir(), "images", key or recipe_hash())


def image_ready(path):
    return all(os.path.exists(os.path.join(path, f)) for f in IMAGE_FILES)


@contextlib.contextmanager
def locked(path):
    """An exclusive flock: concurrent builds of one image wait for each other."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure_image(rebuild=False):
    path = image_dir()
    with locked(path + ".lock"):
        if rebuild and os.path.exists(path):
            shutil.rmtree(path)
        if image_ready(path):
            os.utime(path)  # last use, for prune_images()
            return path
        if os.geteuid() != 0:
            raise LabError("building the lab image needs root (mmdebstrap, chroot)")
        log("building lab image %s (a few minutes, once per recipe)" % os.path.basename(path))
        started = time.monotonic()
        subprocess.run([os.path.join(IMAGE_RECIPE, "build.sh"), path], check=True)
        log("built lab image in %.0f s" % (time.monotonic() - started))
    prune_images(keep=path, older_than_days=7)
    return path


def prune_images(keep, older_than_days=0):
    """Delete cached images other than ``keep`` unused for that many days."""
    images = os.path.dirname(keep)
    cutoff = time.time() - older_than_days * 86400
    for name in os.listdir(images):
        path = os.path.join(images, name)
        if path == keep or not os.path.isdir(path) or os.path.getmtime(path) > cutoff:
            continue
        with locked(path + ".lock"):
            shutil.rmtree(path, ignore_errors=True)
        os.unlink(path + ".lock")
        log("pruned cached image %s" % name)


# --------------------------------------------------------------------------
# Golden images: a base image plus an Ansible playbook run into it through the
# community.general.chroot connection (seconds, where the same work in a TCG VM
# takes minutes), cached by a hash of everything that goes into them.

def tree_hash(path):
    if os.path.isdir(path):
        return recipe_hash(path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def golden_key(base, inputs):
    digest = hashlib.sha256(os.path.basename(os.path.normpath(base)).encode())
    for path in sorted(set(os.path.abspath(p) for p in inputs)):
        digest.update(("%s\0%s\0" % (os.path.relpath(path, REPO), tree_hash(path))).encode())
    return digest.hexdigest()[:16]


def collections_dir():
    """An ANSIBLE_COLLECTIONS_PATH entry that resolves clusterducks.vdisk to this checkout."""
    root = os.path.join(state_root(), "collections")
    link = os.path.join(root, "ansible_collections", "clusterducks", "vdisk")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.realpath(link) != REPO:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(REPO, link)
    return root


def build_golden(base, playbook, extra_vars=(), inputs=()):
    """Run PLAYBOOK into a copy of BASE's root filesystem; returns the image dir."""
    if not image_ready(base):
        raise LabError("%s is not a lab image directory" % base)
    # The collection's roles are always part of the key: playbooks use them.
    key = golden_key(base, [playbook, os.path.join(REPO, "roles"), *extra_vars, *inputs])
    path = os.path.join(cache_dir(), "golden", key)
    with locked(path + ".lock"):
        if image_ready(path):
            os.utime(path)
            return path
        if os.geteuid() != 0:
            raise LabError("building a golden image needs root (loop mount, chroot)")
        log("building golden image %s from %s with %s" % (key, os.path.basename(base), os.path.relpath(playbook, REPO)))
        started = time.monotonic()
        work = path + ".work"
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(os.path.join(work, "root"))
        subprocess.run(["cp", "--sparse=always", os.path.join(base, "rootfs.img"), work], check=True)
        for name in ("id_ed25519",):
            shutil.copy2(os.path.join(base, name), work)
        root = os.path.join(work, "root")
        mounted = []
        try:
            subprocess.run(["mount", "-o", "loop", os.path.join(work, "rootfs.img"), root], check=True)
            mounted.append(root)
            for fs in ("proc", "sys", "dev"):
                target = os.path.join(root, fs)
                subprocess.run(["mount", "--rbind", "/" + fs, target], check=True)
                subprocess.run(["mount", "--make-rslave", target], check=True)
                mounted.append(target)
            env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_dir() + ":" + os.path.join(REPO, ".ansible", "collections"),
                       ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1")
            playbook_bin = os.environ.get("CDLAB_ANSIBLE_PLAYBOOK", os.path.join(REPO, ".venv", "bin", "ansible-playbook"))
            cmd = [playbook_bin, "-i", "%s," % root, "-c", "community.general.chroot",
                   "-e", "golden_image_hosts=all", "-e", "ansible_python_interpreter=/usr/bin/python3", playbook]
            for f in extra_vars:
                cmd += ["-e", "@" + os.path.abspath(f)]
            # Its output goes to stderr: stdout carries only the image directory.
            subprocess.run(cmd, check=True, env=env, stdout=sys.stderr)
            boot = os.path.join(root, "boot")
            kernels = sorted(n for n in os.listdir(boot) if n.startswith("vmlinuz-"))
            if len(kernels) != 1:
                raise LabError("the golden image must hold exactly one kernel, found %s" % kernels)
            kver = kernels[0][len("vmlinuz-"):]
            shutil.copyfile(os.path.join(boot, kernels[0]), os.path.join(work, "vmlinuz"))
            shutil.copyfile(os.path.join(boot, "initrd.img-" + kver), os.path.join(work, "initrd.img"))
            with open(os.path.join(work, "manifest.txt"), "w") as f:
                f.write("golden: %s\nbase: %s\nplaybook: %s\nkernel: %s\n"
                        % (key, os.path.basename(os.path.normpath(base)), os.path.relpath(playbook, REPO), kver))
        finally:
            for target in reversed(mounted):
                subprocess.run(["umount", "-R", target], check=False)
        os.rmdir(root)
        os.rename(work, path)
        log("built golden image %s in %.0f s" % (key, time.monotonic() - started))
    return path


# --------------------------------------------------------------------------
# Acceleration: KVM where it works, TCG otherwise.

def detect_accel(image):
    """'kvm' if a KVM guest really runs here, else 'tcg'.

    /dev/kvm existing is not enough: nested KVM on some hosts hangs or asserts.
    Boot the lab kernel without a root disk; under working KVM it panics and
    exits within seconds. The answer is cached per host kernel and qemu.
    """
    forced = os.environ.get("CDLAB_ACCEL")
    if forced:
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    qemu_version = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=True
    ).stdout.split("\n")[0]
    key = hashlib.sha256((os.uname().release + qemu_version).encode()).hexdigest()[:12]
    cached = os.path.join(cache_dir(), "accel-%s" % key)
    if os.path.exists(cached):
        with open(cached) as f:
            return f.read().strip()
    cmd = [
        "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", "stdio", "-kernel", os.path.join(image, "vmlinuz"),
        "-append", "console=ttyS0 panic=-1 loglevel=3",
    ]
    accel = "tcg"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
        if "Kernel panic" in out.stdout:
            accel = "kvm"
    except subprocess.TimeoutExpired:
        pass
    os.makedirs(cache_dir(), exist_ok=True)
    with open(cached, "w") as f:
        f.write(accel + "\n")
    log("acceleration: %s" % accel)
    return accel


# --------------------------------------------------------------------------
# Lab and VM state.

def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port, kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Lab:
    """A named set of VMs sharing one storage network."""

    def __init__(self, name):
        if not name or "/" in name or name.startswith("."):
            raise LabError("invalid lab name %r" % name)
        self.name = name
        self.path = os.path.join(state_root(), name)
        self.meta_path = os.path.join(self.path, "lab.json")
        self.meta = self._load()

    def _load(self):
        if os.path.exists(self.meta_path):
            with open(self.meta_path) as f:
                return json.load(f)
        return {"mcast_port": None, "next_index": 0}

    def save(self):
        os.makedirs(self.path, exist_ok=True)
        write_json(self.meta_path, self.meta)

    @property
    def mcast_port(self):
        if not self.meta["mcast_port"]:
            self.meta["mcast_port"] = free_port(socket.SOCK_DGRAM)
            self.save()
        return self.meta["mcast_port"]

    def vm(self, name):
        return VM(self, name)

    def vms(self):
        if not os.path.isdir(self.path):
            return []
        names = sorted(
            d for d in os.listdir(self.path)
            if os.path.exists(os.path.join(self.path, d, "vm.json"))
        )
        return [VM(self, n) for n in names]

    def lock(self):
        return locked(os.path.join(self.path, ".lock"))


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def parse_size(text):
    """'8G' -> bytes. Binary units, as qemu-img and the collection use them."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    s = str(text).strip().upper().rstrip("B").rstrip("I")
    num, unit = (s[:-1], s[-1]) if s and s[-1] in units else (s, "")
    try:
        value = int(float(num) * units[unit])
    except (ValueError, KeyError):
        raise LabError("invalid size %r" % text)
    if value <= 0:
        raise LabError("size must be positive: %r" % text)
    return value


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

    def stop(self, timeout=90):
        """Clean shutdown through ACPI; a power-cut if the guest ignores it."""
        return stop_all([self], timeout) == [self]

    # -- access -------------------------------------------------------------

    def ssh_command(self, args=()):
        conf = self.conf
        key = os.path.join(conf["image"], "id_ed25519")
        return ["ssh", *SSH_OPTS, "-i", key, "-p", str(conf["ssh_port"]),
                "root@127.0.0.1", *args]

    def ssh_ok(self):
        result = subprocess.run(self.ssh_command(["true"]), capture_output=True,
                                stdin=subprocess.DEVNULL, timeout=30, check=False)
        return result.returncode == 0

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


def stop_all(vms, timeout=90):
    """Clean ACPI power-off of several VMs at once; a power-cut for any that
    ignores it. Logs how long each took; returns the VMs that were running."""
    running = [vm for vm in vms if vm.running]
    started = time.monotonic()
    for vm in running:
        vm.qmp("system_powerdown")
    for vm in running:
        if vm.wait_exit(max(1, timeout - (time.monotonic() - started))):
            log("%s powered off in %.1f s" % (vm.name, time.monotonic() - started))
        else:
            log("%s did not power off in %d s: killing it" % (vm.name, timeout))
            vm.kill()
    return running


def qemu_command(conf, vm_dir, mcast_port, accel):
    """The qemu command line for one VM (pure: unit-tested)."""
    image = conf["image"]
    idx = conf["index"]
    join = os.path.join
    append = " ".join([
        "root=/dev/vda", "rw", "console=ttyS0", "net.ifnames=0", "ipv6.disable=1",
        # Devices (hostname: false) must find their own name on their vDisk.
        *(["systemd.hostname=%s" % conf["name"]] if conf.get("hostname", True) else []),
        # systemd-network-generator turns this into a static eth1 config (and
        # dracut's network-legacy, in an initramfs that brings up the network).
        "ip=%s:::255.255.255.0::eth1:off" % conf["storage_ip"],
        *conf.get("kernel_args", []),
    ])
    root_drive = "if=none,id=root,file=%s,format=qcow2,discard=unmap" % join(vm_dir, "root.qcow2")
    if conf["ephemeral"]:
        # Every write to the OS disk is discarded when the qemu process ends.
        root_drive += ",snapshot=on"
    cmd = [
        "qemu-system-x86_64",
        "-name", "cdlab-%s" % conf["name"],
        "-machine", "q35",
        "-accel", "kvm" if accel == "kvm" else "tcg,thread=multi",
        "-cpu", "host" if accel == "kvm" else "max",
        "-smp", str(conf["cpus"]), "-m", str(conf["memory"]),
        "-nodefaults", "-no-user-config", "-display", "none",
        "-kernel", join(image, "vmlinuz"), "-initrd", join(image, "initrd.img"),
        "-append", append,
        "-drive", root_drive,
        "-device", "virtio-blk-pci,drive=root,serial=cdlab-root",
    ]
    for n in range(1, len(conf["disks"]) + 1):
        cmd += [
            "-drive", "if=none,id=disk%d,file=%s,format=raw,discard=unmap"
            % (n, join(vm_dir, "disk%d.raw" % n)),
            "-device", "virtio-blk-pci,drive=disk%d,serial=cdlab-disk%d" % (n, n),
        ]
    hostfwd = "".join(",hostfwd=tcp:127.0.0.1:%d-:%s" % (host, guest)
                      for guest, host in sorted(conf.get("forwards", {}).items()))
    cmd += [
        # Management: user-mode net that reaches nothing but the forwards.
        "-netdev", "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22%s" % (conf["ssh_port"], hostfwd),
        "-device", "virtio-net-pci,netdev=mgmt,mac=52:54:00:00:%02x:01,addr=0x10,romfile="
        % (idx % 256),
        # Storage: a multicast hub on loopback shared by the lab's VMs only.
        "-netdev", "socket,id=storage,mcast=%s:%d,localaddr=127.0.0.1"
        % (STORAGE_MCAST_GROUP, mcast_port),
        "-device", "virtio-net-pci,netdev=storage,mac=52:54:00:77:%02x:02,addr=0x11,romfile="
        % (idx % 256),
        "-device", "virtio-rng-pci",
        # SMBIOS OEM strings read from files: a secret in them never shows in ps.
        *[a for n in range(len(conf.get("smbios", []))) for a in
          ("-smbios", "type=11,path=%s" % join(vm_dir, "smbios-%d.txt" % n))],
        "-chardev", "file,id=console,path=%s" % join(vm_dir, "console.log"),
        "-serial", "chardev:console",
        "-qmp", "unix:%s,server=on,wait=off" % join(vm_dir, "qmp.sock"),
        "-pidfile", join(vm_dir, "qemu.pid"),
        "-daemonize",
    ]
    return cmd


def wait_for_ssh(vms, timeout):
    """Wait until every VM answers SSH; returns {name: seconds since start}."""
    pending = {vm.name: vm for vm in vms}
    took = {}
    started = time.monotonic()
    deadline = started + timeout
    while pending:
        for name, vm in list(pending.items()):
            if not vm.running:
                raise LabError("%s stopped while booting; see %s"
                               % (name, vm.file("console.log")))
            if vm.ssh_ok():
                took[name] = time.monotonic() - getattr(vm, "started_at", started)
                del pending[name]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise LabError("no SSH from %s after %d s; see their console.log"
                           % (", ".join(sorted(pending)), timeout))
        time.sleep(1)
    return took


# --------------------------------------------------------------------------
# Inventory.

def inventory(lab):
    """An Ansible YAML inventory (as a dict) of the lab's running VMs."""
    hosts = {}
    for vm in lab.vms():
        if not vm.running:
            continue
        d = vm.describe()
        hosts[vm.name] = {
            "ansible_host": d["ssh_host"],
            "ansible_port": d["ssh_port"],
            "ansible_user": d["ssh_user"],
            "ansible_ssh_private_key_file": d["ssh_key"],
            "ansible_ssh_common_args": " ".join(SSH_OPTS[:6]),
            "ansible_python_interpreter": "/usr/bin/python3",
            "cdlab_storage_ip": d["storage_ip"],
            "cdlab_disks": d["disks"],
            "cdlab_forwards": d["forwards"],
        }
    return {"all": {"children": {"cdlab_%s" % lab.name.replace("-", "_"): {"hosts": hosts}}}}


def dump_yaml(data, indent=0):
    """Enough YAML for an inventory (JSON is valid YAML for scalars and lists)."""
    lines = []
    pad = "  " * indent
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append("%s%s:" % (pad, key))
            lines.extend(dump_yaml(value, indent + 1) if value else [pad + "  {}"])
        else:
            lines.append("%s%s: %s" % (pad, key, json.dumps(value)))
    return lines


def write_inventory(lab, path=None):
    path = path or os.path.join(lab.path, "inventory.yml")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("# Written by lab/cdlab.py for lab %r: the running VMs.\n" % lab.name)
        f.write("\n".join(dump_yaml(inventory(lab))) + "\n")
    return path


# --------------------------------------------------------------------------
# Commands.

def cmd_image(args):
    path = ensure_image(rebuild=args.rebuild)
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
    pattern = re.compile(args.pattern)
    deadline = time.monotonic() + args.timeout
    while True:
        with contextlib.suppress(FileNotFoundError):
            with open(vm.file("console.log"), "rb") as f:
                for line in f.read().decode("utf-8", "replace").splitlines():
                    if pattern.search(line):
                        print(line)
                        return
        if time.monotonic() > deadline:
            raise LabError("%s: no console line matching %r within %d s" % (vm.name, args.pattern, args.timeout))
        time.sleep(1)


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
    stop_all(select(lab, args.names), args.timeout)
    write_inventory(lab)


def cmd_kill(args):
    lab = Lab(args.lab)
    for vm in select(lab, args.names):
        if vm.kill():
            log("%s power-cut" % vm.name)
    write_inventory(lab)


def cmd_reboot(args):
    """A new qemu process, so an ephemeral root really starts over."""
    lab = Lab(args.lab)
    vms = select(lab, args.names)
    stop_all(vms)
    with lab.lock():
        boot(lab, vms, args.timeout)


def cmd_destroy(args):
    lab = Lab(args.lab)
    logs = os.path.join(state_root(), "logs", lab.name)
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


def main(argv=None):
    p = argparse.ArgumentParser(prog="cdlab", description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--lab", default=os.environ.get("CDLAB_LAB", "default"),
                   help="lab name: VMs of one lab share a storage network (default: %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("image", help="build (or find cached) the VM image; print its directory")
    s.add_argument("--rebuild", action="store_true")
    s.add_argument("--prune", action="store_true", help="delete every other cached image")
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
    s.add_argument("--timeout", type=int, default=90)
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


if __name__ == "__main__":
    sys.exit(main())
