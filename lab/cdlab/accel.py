"""Acceleration: KVM where it really works, TCG otherwise."""

import hashlib
import os
import subprocess

from .common import cache_dir, log


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
