"""The qemu command line of one VM."""

import os

from .net import STORAGE_MCAST_GROUP

# Under TCG, "max" offers AVX2, AES-NI and the like, which the guest kernel
# then prefers (crypto self-tests, page clearing) and which TCG emulates
# slowly: device boots on 2 host cores took 133-147 s to SSH with stalls of
# 8-21 s and a target-side iSCSI connection drop; the baseline x86-64 CPU
# took 81-84 s with stalls of 3-5 s (2026-11-26, same lab, alternating boots).
TCG_CPU = "qemu64"


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
        "-cpu", "host" if accel == "kvm" else TCG_CPU,
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
