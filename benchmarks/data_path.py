"""Benchmark: which export path makes a vDisk as fast as the disk under it.

One lab run, one storage VM (the lab image plus LVM and ZFS:
lab/image/variants/backends.txt), one data disk, every candidate side by side on
partitions of that disk, each a 1 GiB LUN of one iSCSI target:

  today          fileio on a nodatacow sparse file in a btrfs subvolume,
                 write-back off, AIO off (every write O_DSYNC, in turn)
  fileio-aio     the same file layout, AIO on and emulate_write_cache=1
                 (O_DIRECT writes; the initiator's flushes become fsync)
  loop-btrfs     a nodatacow file on btrfs behind a direct-I/O loop device,
                 exported as a block backstore
  loop-lazytime  the same on a btrfs mounted with lazytime (an fsync of a
                 file whose only change is its mtime need not log the inode)
  lvm-thin       an LVM thin volume (64 KiB chunks, zeroing off) as block
  lvm-thin-wt    another thin volume of that pool as fileio on the device,
                 write-back off, AIO off: write-through (every write O_DSYNC,
                 so the thin pool commits its mappings before LIO answers)
  zvol-4k/16k    ZFS zvols with volblocksize 4K and 16K as block
  raw            a partition of the raw virtio disk as block: the ceiling

Each LUN is filled once with incompressible data from inside the storage VM
(so no job measures a first write into a sparse file or a thin allocation),
then each job runs:
  - from the initiator over iSCSI (fio, libaio, O_DIRECT on the LUN), and
  - inside the storage VM on the candidate's own file or device, with the
    I/O LIO issues for it (buffered + O_DSYNC for `today`, O_DIRECT for the
    others; a flush after each synchronous write where the export advertises
    a write cache, none where it does not),
so the network and the backend can be told apart. Jobs: 4k random write qd16
(uniform and zipf 1.2), 4k write + fdatasync qd1, 4k random read qd16 (page
caches dropped first), 1 MiB sequential write qd4; every job over the whole
1 GiB, new random data for every write. Repetitions alternate: each round runs
every candidate once per job, starting from a different candidate.

It prints median and range (min-max) per job, the remote figures as a share
of `raw`, the local ones, and the attributes LIO reports for each export
(emulate_write_cache, block size, queue depth, max sectors).

--restart-probe N: N times per candidate, the initiator writes 4 KiB blocks
(O_DIRECT, no flush) into fresh 64 KiB chunks every 20 ms; thin volumes get a
snapshot first, as the 1-minute schedule does, so every write is a first write
after a snapshot. The storage VM is killed and booted; once the target is back
the initiator writes 10 more, flushes (fsync of the LUN: a SYNCHRONIZE CACHE
the restarted target answers), and reads every completed block back. It
counts the writes the storage lost although the flush after them succeeded.

Usage: python3 benchmarks/data_path.py [--reps 3] [--runtime 10] [--only a,b] [--jobs x,y] [--no-local]
                                      [--no-perf] [--cuts 5] [--restart-probe 3] [--grow] [--json FILE] [--keep]
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LAB = "bench-datapath"
CDLAB = [sys.executable, os.path.join(REPO, "lab", "cdlab"), "--lab", LAB]
TARGET = "iqn.2026-11.net.clusterducks:bench-datapath"
DISK = "/dev/disk/by-id/virtio-cdlab-disk1"
LUN_BYTES = 1 << 30

# name -> (backstore, recipe, grow). The recipe runs in the storage VM, makes
# the candidate if it is not there yet (or attaches it again after a
# power-cut) and prints the path to export; grow adds 512 MiB under load.
CANDIDATES = {
    "today": ("fileio-sync", "mkfile today", "grow_file today"),
    "fileio-aio": ("fileio-aio", "mkfile aio", "grow_file aio"),
    "loop-btrfs": ("block", "loopdev $(mkfile loop)", "grow_file loop && losetup -c $(loopdev $(mkfile loop))"),
    "loop-lazytime": ("block", "loopdev $(mkfile lazy/loop)",
                      "grow_file lazy/loop && losetup -c $(loopdev $(mkfile lazy/loop))"),
    "lvm-thin": ("block", "thinlv vd", "lvextend -q -L +512M cdbench/vd"),
    "lvm-thin-wt": ("fileio-sync", "thinlv vdwt", "lvextend -q -L +512M cdbench/vdwt"),
    "zvol-4k": ("block", "zvol 4K", "zfs set volsize=1536M cdbench/vd4K"),
    "zvol-16k": ("block", "zvol 16K", "zfs set volsize=1536M cdbench/vd16K"),
    "raw": ("block", "echo ${disk}-part4", None),
}
ZFS = ("zvol-4k", "zvol-16k")

# Shell helpers for the candidates' recipes above (run in the storage VM).
HELPERS = r"""
set -euo pipefail
disk=%(disk)s
mkfile() {
    local d=/bench/btrfs/$1
    if [ ! -e $d/disk.img ]; then
        mkdir -p $(dirname $d); btrfs subvolume create $d >/dev/null; chattr +C $d; truncate -s %(size)d $d/disk.img
    fi
    echo $d/disk.img
}
grow_file() { truncate -s +512M /bench/btrfs/$1/disk.img; }
loopdev() {
    local dev; dev=$(losetup -n -O NAME -j "$1" | head -n 1)
    [ -n "$dev" ] && echo $dev || losetup --direct-io=on --find --show "$1"
}
thinlv() { [ -e /dev/cdbench/$1 ] || lvcreate -q -V 1G -T cdbench/pool -n $1 >/dev/null; echo /dev/cdbench/$1; }
zvol() {
    [ -e /dev/zvol/cdbench/vd$1 ] || zfs create -V 1G -o volblocksize=$1 -o compression=off cdbench/vd$1
    udevadm settle; echo /dev/zvol/cdbench/vd$1
}
# ZFS loaded, its ARC capped at a quarter of the 1 GiB working set.
zfs_up() { modprobe zfs; echo $((256 << 20)) > /sys/module/zfs/parameters/zfs_arc_max; }
""" % {"disk": DISK, "size": LUN_BYTES}

# After a power-cut: the pools back, nothing made again.
REATTACH = HELPERS + r"""
mountpoint -q /bench/btrfs || mount -o noatime ${disk}-part1 /bench/btrfs
mountpoint -q /bench/btrfs/lazy || mount -o noatime,lazytime ${disk}-part5 /bench/btrfs/lazy
vgchange -q -ay cdbench >/dev/null
if [ "$1" = yes ]; then
    zfs_up
    zpool list cdbench >/dev/null 2>&1 || zpool import -f cdbench
fi
"""

# The storage VM's data disk: btrfs for the file candidates, an LVM PV for the
# thin pool, a zpool, 1 GiB of raw disk, and a second btrfs (lazytime).
PREPARE = HELPERS + r"""
[ -e /bench/ready ] && exit 0  # a lab kept by --keep: reuse it
sgdisk --zap-all $disk >/dev/null
sgdisk -n1:0:+5G -n2:0:+5G -n3:0:+4G -n4:0:+1G -n5:0:+2G $disk >/dev/null
udevadm settle
mkfs.btrfs -q -f ${disk}-part1
mkfs.btrfs -q -f ${disk}-part5
mkdir -p /bench/btrfs && mount -o noatime ${disk}-part1 /bench/btrfs
mkdir -p /bench/btrfs/lazy && mount -o noatime,lazytime ${disk}-part5 /bench/btrfs/lazy
pvcreate -q ${disk}-part2 && vgcreate -q cdbench ${disk}-part2
lvcreate -q --type thin-pool -L 4800M --chunksize 64k --zero n -n pool cdbench
if [ "$1" = yes ]; then
    zfs_up
    zpool create -f -o ashift=12 -O atime=off cdbench ${disk}-part3
fi
touch /bench/ready
"""

# Exports every candidate as a LUN of one target, mapped to the initiator.
EXPORT = r"""
import json, sys
import rtslib_fb as r
spec = json.load(sys.stdin)
root = r.RTSRoot()
root.clear_existing(confirm=True)
tpg = r.TPG(r.Target(r.FabricModule("iscsi"), spec["target"]), 1)
tpg.set_attribute("authentication", "0")
acl = r.NodeACL(tpg, spec["initiator"])
out = {}
for lun_id, (name, kind, path) in enumerate(spec["luns"]):
    wwn = spec["wwns"][name]
    if kind == "block":
        so = r.BlockStorageObject(name, dev=path, wwn=wwn)
    else:
        so = r.FileIOStorageObject(name, dev=path, size=spec["size"], aio=(kind == "fileio-aio"),
                                   write_back=(kind == "fileio-aio"), wwn=wwn)
    r.MappedLUN(acl, lun_id, r.LUN(tpg, lun_id, so))
    out[name] = {k: so.get_attribute(k) for k in ("emulate_write_cache", "block_size", "queue_depth",
                                                   "hw_max_sectors", "max_unmap_lba_count", "emulate_tpu",
                                                   "emulate_fua_write", "is_nonrot")}
# Portal and enable last: an initiator logging in again after a power-cut must
# find every LUN (before them it gets LIO's 32 KiB read-only placeholder LUN 0).
r.NetworkPortal(tpg, spec["ip"], 3260)
tpg.enable = True
print(json.dumps(out))
"""

# How the collection grows a fileio vDisk today (lio_backstore.recreate): the
# storage object is deleted with its LUNs and made again, same WWN, same LUN
# ids and mappings, new size.
RECREATE = r"""
import sys
import rtslib_fb as r
name, size = sys.argv[1], int(sys.argv[2])
so = r.FileIOStorageObject(name)
saved = [(lun.parent_tpg, lun.lun, [(m.parent_nodeacl, m.mapped_lun) for acl in lun.parent_tpg.node_acls
                                    for m in acl.mapped_luns if m.tpg_lun.lun == lun.lun])
         for lun in so.attached_luns]
dev, wwn, aio, wb = so.udev_path, so.wwn, so.aio, so.write_back
so.delete()
so = r.FileIOStorageObject(name, dev=dev, size=size, wwn=wwn, aio=aio, write_back=wb)
for tpg, lun_id, mapped in saved:
    lun = r.LUN(tpg, lun_id, so)
    for acl, mapped_lun in mapped:
        r.MappedLUN(acl, mapped_lun, lun)
"""

JOBS = {
    "randwrite-4k-qd16": "--rw=randwrite --bs=4k --iodepth=16",
    "randwrite-4k-qd16-zipf": "--rw=randwrite --bs=4k --iodepth=16 --random_distribution=zipf:1.2",
    "write-4k-fdatasync-qd1": "--rw=randwrite --bs=4k --iodepth=1",
    "randread-4k-qd16": "--rw=randread --bs=4k --iodepth=16",
    "write-1m-qd4": "--rw=write --bs=1M --iodepth=4",
}
UNITS = {"write-1m-qd4": "MiB/s"}


def sh(argv, **kw):
    result = subprocess.run(argv, text=True, capture_output=True, check=False, **kw)
    if result.returncode != 0:
        sys.exit("benchmark step failed: %s\n%s\n%s" % (" ".join(argv)[:300], result.stdout[-3000:],
                                                        result.stderr[-3000:]))
    return result.stdout


def ssh(vm, cmd, stdin=None):
    return sh(CDLAB + ["ssh", vm, cmd], input=stdin)


def fio_args(job, path, runtime, local_kind=None):
    """fio's command line for JOB on PATH. local_kind: run inside the storage
    VM with the I/O LIO issues for that backstore; None: from the initiator."""
    args = ["fio", "--name=" + job, "--filename=" + path, "--size=%d" % LUN_BYTES, "--time_based",
            "--runtime=%d" % runtime, "--ramp_time=2", "--randrepeat=0", "--norandommap",
            "--refill_buffers", "--buffer_compress_percentage=0", "--output-format=json",
            "--ioengine=libaio", "--direct=1"]
    args += JOBS[job].split()
    sync_job = job.startswith("write-4k-fdatasync")
    if local_kind == "fileio-sync":
        # LIO's synchronous fileio path: buffered writes on a file opened
        # O_DSYNC, and no flush (it advertises no write cache).
        args = [a for a in args if a != "--direct=1"] + ["--direct=0", "--sync=dsync"]
        if sync_job:
            args += ["--ioengine=psync"]
    elif sync_job:
        args += ["--ioengine=psync", "--fdatasync=1"]
    return " ".join(args)


def figure(job, out):
    data = json.loads(out[out.index("{"):])["jobs"][0]
    side = data["read"] if job.startswith("randread") else data["write"]
    return side["bw"] / 1024.0 if job in UNITS else side["iops"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--runtime", type=int, default=10, help="seconds per job (after 2 s of ramp)")
    p.add_argument("--only", help="comma-separated candidates (default: all)")
    p.add_argument("--jobs", help="comma-separated jobs (default: all)")
    p.add_argument("--no-local", action="store_true", help="skip the runs inside the storage VM")
    p.add_argument("--no-perf", action="store_true", help="skip the fio jobs")
    p.add_argument("--cuts", type=int, default=0,
                   help="power-cuts of the storage VM per candidate, during fsync'd writes (default: none)")
    p.add_argument("--restart-probe", type=int, default=0,
                   help="storage restarts per candidate between unflushed writes and their flush (default: none)")
    p.add_argument("--grow", action="store_true", help="grow each candidate under load")
    p.add_argument("--json", help="write every figure to this file")
    p.add_argument("--keep", action="store_true", help="keep the VMs afterwards")
    args = p.parse_args()

    names = args.only.split(",") if args.only else list(CANDIDATES)
    jobs = args.jobs.split(",") if args.jobs else list(JOBS)
    unknown = set(names) - set(CANDIDATES) | set(jobs) - set(JOBS)
    if unknown:
        sys.exit("unknown candidate or job: %s" % ", ".join(sorted(unknown)))
    # The lab image has LVM and btrfs; only ZFS needs the backends variant (8 min to build).
    variant = ["--variant", "backends"] if set(names) & set(ZFS) else []
    print("building (or finding) the lab image%s ..." % (" and its backends variant" if variant else ""), flush=True)
    image = ["--image", sh(CDLAB + ["image"] + variant).strip()]

    print("booting the storage VM and the initiator ...", flush=True)
    sh(CDLAB + ["up", "storage", "--disk", "20G", "--memory", "2048", "--cpus", "2", "--timeout", "600"] + image)
    sh(CDLAB + ["up", "initiator", "--memory", "1024", "--cpus", "2", "--timeout", "600"])
    results = {"runtime": args.runtime, "reps": args.reps, "remote": {}, "local": {}, "cuts": {}, "grow": {},
               "restart_probe": {}}
    try:
        lab = Bench(args, names)
        results["accel"], results["attributes"] = lab.accel, lab.attrs
        if not args.no_perf:
            perf(lab, args, jobs, results)
        for name in names:
            if args.restart_probe:
                results["restart_probe"][name] = restart_probe(lab, name, args.restart_probe)
            if args.cuts:
                results["cuts"][name] = durability(lab, name, args.cuts)
            if args.grow and CANDIDATES[name][2]:
                results["grow"][name] = grow(lab, name)
    finally:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        if not args.keep:
            sh(CDLAB + ["destroy"])
    report(results, names, jobs)


class Bench(object):
    """The lab as the benchmark set it up: every candidate exported as a LUN."""

    def __init__(self, args, names):
        self.names = names
        self.zfs = "yes" if set(names) & set(ZFS) else "no"
        vms = {vm["name"]: vm for vm in json.loads(sh(CDLAB + ["status"]))}
        self.ip = vms["storage"]["storage_ip"]
        ssh("storage", "bash -s %s" % self.zfs, stdin=PREPARE)
        self.paths = self.attach()
        print("filling each LUN once with incompressible data (inside the storage VM) ...", flush=True)
        for name in names:
            direct = "0" if CANDIDATES[name][0] == "fileio-sync" else "1"
            ssh("storage", "[ -e /bench/filled-{name} ] || {{ fio --name=fill --filename={path} --size={size} --rw=write "
                "--bs=1M --iodepth=8 --ioengine=libaio --direct={direct} --refill_buffers --buffer_compress_percentage=0 "
                "--end_fsync=1 >/dev/null && touch /bench/filled-{name}; }}".format(
                    name=name, path=self.paths[name], size=LUN_BYTES, direct=direct))
        self.initiator = ssh("initiator", "sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi").strip()
        self.attrs = self.export()
        # The storage VM is down for a minute or two at each power-cut: the
        # initiator queues I/O that long instead of failing it.
        ssh("initiator", "iscsiadm -m session >/dev/null 2>&1 && iscsiadm -m node --logoutall=all >/dev/null; "
            "iscsiadm -m discovery -t st -p {ip} >/dev/null && "
            "iscsiadm -m node -T {t} -p {ip} -o update -n node.session.timeo.replacement_timeout -v 900 && "
            "iscsiadm -m node -T {t} -p {ip} --login >/dev/null && udevadm settle".format(ip=self.ip, t=TARGET))
        # The LUNs' kernel names (fio reads ':' in a file name as a list separator).
        links = ["/dev/disk/by-path/ip-%s:3260-iscsi-%s-lun-%d" % (self.ip, TARGET, i) for i in range(len(names))]
        ssh("initiator", "rm -f /dev/disk/by-path/ip-%s; for _ in $(seq 60); do ls %s >/dev/null 2>&1 && exit 0; "
            "sleep 1; done; exit 1" % (self.ip, " ".join(links)))
        self.luns = dict(zip(names, ssh("initiator", "readlink -f %s" % " ".join(links)).split()))
        with open(os.path.join(REPO, ".lab", LAB, "storage", "qemu.cmdline")) as f:
            self.accel = f.read().split("-accel ")[1].split()[0]
        self.data_disk = ssh("storage", "basename $(readlink -f %s)" % DISK).strip()

    def attach(self):
        return {name: ssh("storage", "bash -s", stdin=HELPERS + CANDIDATES[name][1]).strip().splitlines()[-1]
                for name in self.names}

    def export(self):
        spec = {"target": TARGET, "ip": self.ip, "initiator": self.initiator, "size": LUN_BYTES,
                "luns": [[name, CANDIDATES[name][0], self.paths[name]] for name in self.names],
                "wwns": {name: str(uuid.uuid5(uuid.NAMESPACE_DNS, name + ".bench.clusterducks.net"))
                         for name in self.names}}
        return json.loads(ssh("storage", "python3 -c '%s'" % EXPORT.replace("'", "'\\''"), stdin=json.dumps(spec)))

    def power_cut(self, when_down=None):
        """Kill the storage VM's qemu, (run ``when_down``,) boot it, put every export back."""
        sh(CDLAB + ["kill", "storage"])
        if when_down:
            when_down()
        sh(CDLAB + ["start", "storage", "--timeout", "600"])
        ssh("storage", "bash -s %s" % self.zfs, stdin=REATTACH)
        self.paths = self.attach()
        self.export()

    def flushes(self):
        """Flush requests the storage VM's data disk has completed (field 16 of its stat)."""
        return int(ssh("storage", "cat /sys/block/%s/stat" % self.data_disk).split()[15])


def perf(lab, args, jobs, results):
    names = lab.names
    started = time.monotonic()
    for rep in range(args.reps):
        for job in jobs:
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                if job.startswith("randread"):
                    ssh("storage", "sync; echo 3 > /proc/sys/vm/drop_caches")
                out = ssh("initiator", fio_args(job, lab.luns[name], args.runtime))
                results["remote"].setdefault(name, {}).setdefault(job, []).append(figure(job, out))
                if not args.no_local:
                    if job.startswith("randread"):
                        ssh("storage", "sync; echo 3 > /proc/sys/vm/drop_caches")
                    out = ssh("storage", fio_args(job, lab.paths[name], args.runtime, CANDIDATES[name][0]))
                    results["local"].setdefault(name, {}).setdefault(job, []).append(figure(job, out))
            print("round %d/%d, %s done (%.0f s)" % (rep + 1, args.reps, job, time.monotonic() - started), flush=True)


FSYNC_LOG = os.path.join(REPO, "extensions", "molecule", "shared", "files", "fsync_log.py")
RESTART_PROBE = os.path.join(REPO, "extensions", "molecule", "shared", "files", "restart_probe.py")


def durability(lab, name, cuts):
    """XFS on the LUN; fsync'd records written from the initiator; the storage
    VM power-cut CUTS times at random moments; every acknowledged record must
    come back, and the filesystem must be clean.

    A qemu kill cannot lose what reached the virtual disk (it sits in the
    host's page cache), so a backend that never flushes would pass the cuts.
    The flush count closes that hole: the storage VM's disk must see at least
    one flush per acknowledged record."""
    lun = lab.luns[name]
    with open(FSYNC_LOG) as f:
        ssh("initiator", "cat > /root/fsync_log.py", stdin=f.read())
    ssh("initiator", "umount -q /mnt/c 2>/dev/null; mkfs.xfs -q -f {lun} && mkdir -p /mnt/c && mount {lun} /mnt/c && "
        "rm -f /run/acks".format(lun=lun))
    before = lab.flushes()
    ssh("initiator", "python3 /root/fsync_log.py write /mnt/c/log /run/acks --count 200")
    result = {"flushes_per_fsync": (lab.flushes() - before) / 200.0, "cuts": []}
    for cut in range(cuts):
        first = int(ssh("initiator", "stat -c %s /mnt/c/log").strip()) // 4096  # this cut's first record
        ssh("initiator", "nohup python3 /root/fsync_log.py write /mnt/c/log /run/acks "
            ">/dev/null 2>/run/writer.err </dev/null & echo $! > /run/writer.pid")
        time.sleep(random.uniform(3, 20))
        acked_at_cut = int(ssh("initiator", "wc -l < /run/acks").strip())
        down = time.monotonic()
        lab.power_cut()
        # The writer must carry on by itself once the target is back: counted
        # after the cut, so that records acknowledged before the kill do not count.
        acked_by_now = int(ssh("initiator", "wc -l < /run/acks").strip())
        ssh("initiator", "for _ in $(seq 600); do [ $(wc -l < /run/acks) -gt {n} ] && exit 0; sleep 1; done; "
            "cat /run/writer.err; exit 1".format(n=acked_by_now + 20))
        outage = time.monotonic() - down
        ssh("initiator", "kill $(cat /run/writer.pid); sleep 1; sync; echo 3 > /proc/sys/vm/drop_caches")
        checked = json.loads(subprocess.run(CDLAB + ["ssh", "initiator", "python3 /root/fsync_log.py check "
                                                     "/mnt/c/log /run/acks --from %d" % first],
                                            capture_output=True, text=True, check=False).stdout)
        checked.update(acked_at_cut=acked_at_cut, outage_s=round(outage))
        result["cuts"].append(checked)
        print("%s: power-cut %d/%d: %s" % (name, cut + 1, cuts, checked), flush=True)
    repair = subprocess.run(CDLAB + ["ssh", "initiator", "umount /mnt/c && xfs_repair -n %s 2>&1" % lun],
                            capture_output=True, text=True, check=False)
    result["xfs_clean"] = repair.returncode == 0
    result["xfs_repair"] = repair.stdout[-500:]
    return result


def restart_probe(lab, name, tries):
    """Writes completed by the storage before it died, flushed after it came back: how many are gone."""
    lun = lab.luns[name]
    thin = CANDIDATES[name][1].startswith("thinlv")
    lv = lab.paths[name][len("/dev/"):]
    with open(RESTART_PROBE) as f:
        ssh("initiator", "cat > /root/probe.py", stdin=f.read())
    found = []
    for _try in range(tries):
        if thin:  # as the 1-minute schedule leaves it: every chunk shared with a snapshot
            ssh("storage", "lvremove -q -y %s-probe >/dev/null 2>&1; lvcreate -q -s -n %s-probe %s >/dev/null"
                % (lv, os.path.basename(lv), lv))
        base = random.randrange(0, (LUN_BYTES >> 16) - 2048) << 16
        ssh("initiator", "rm -f /run/probe.stop /run/probe.out; nohup python3 /root/probe.py %s %d /run/probe.stop "
            ">/run/probe.out 2>&1 </dev/null &" % (lun, base))
        time.sleep(random.uniform(2, 5))
        lab.power_cut(when_down=lambda: ssh("initiator", "touch /run/probe.stop"))
        out = ssh("initiator", "for _ in $(seq 300); do pgrep -f '[p]robe.py /dev' >/dev/null || break; sleep 1; done; "
                  "cat /run/probe.out")
        try:
            found.append(json.loads(out.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            sys.exit("%s: the restart probe printed no result:\n%s" % (name, out[-3000:]))
        print("%s: restart probe %d/%d: %s" % (name, len(found), tries, found[-1]), flush=True)
    if thin:
        ssh("storage", "lvremove -q -y %s-probe >/dev/null" % lv)
    return found


def grow(lab, name):
    """Four O_DIRECT writers and a reader on XFS on the LUN; the candidate grows
    by 512 MiB under them; then a rescan and xfs_growfs. Counts I/O errors."""
    lun = lab.luns[name]
    ssh("initiator", "umount -q /mnt/c 2>/dev/null; mkfs.xfs -q -f {lun} && mkdir -p /mnt/c && mount {lun} /mnt/c "
        "&& dmesg -C".format(lun=lun))
    wwn_before = ssh("initiator", "cat /sys/block/$(basename $(readlink -f %s))/device/wwid" % lun).strip()
    size_before = int(ssh("initiator", "blockdev --getsize64 %s" % lun))
    ssh("initiator", "nohup fio --directory=/mnt/c --size=96M --bs=4k --direct=1 --ioengine=libaio --iodepth=4 "
        "--time_based --runtime=60 --output-format=json --output=/run/grow.json "
        "--name=w --rw=randwrite --numjobs=4 --name=r --rw=randread --numjobs=1 "
        ">/dev/null 2>/run/grow.err </dev/null & echo $! > /run/fio.pid")
    time.sleep(15)
    grown = subprocess.run(CDLAB + ["ssh", "storage", "bash -s"],
                           input=HELPERS + CANDIDATES[name][2], capture_output=True, text=True, check=False)
    if CANDIDATES[name][0].startswith("fileio") and not lab.paths[name].startswith("/dev/"):
        # A fileio backstore on a file has a fixed size: recreate it, as the
        # collection does. On a block device LIO reads the device's size.
        ssh("storage", "python3 -c '%s' %s %d" % (RECREATE.replace("'", "'\\''"), name, LUN_BYTES + (512 << 20)))
    time.sleep(5)
    ssh("initiator", "echo 1 > /sys/block/$(basename $(readlink -f %s))/device/rescan; sleep 2" % lun)
    size_after = int(ssh("initiator", "blockdev --getsize64 %s" % lun))
    growfs = subprocess.run(CDLAB + ["ssh", "initiator", "xfs_growfs /mnt/c 2>&1"],
                            capture_output=True, text=True, check=False)
    ssh("initiator", "while kill -0 $(cat /run/fio.pid) 2>/dev/null; do sleep 2; done")
    fio_out = ssh("initiator", "cat /run/grow.json")
    fio_errors = sum(j.get("error", 0) != 0 for j in json.loads(fio_out[fio_out.index("{"):])["jobs"])
    kernel_errors = ssh("initiator", "dmesg | grep -ciE 'I/O error|out of range|Remote I/O|metadata I/O' || true")
    wwn_after = ssh("initiator", "cat /sys/block/$(basename $(readlink -f %s))/device/wwid" % lun).strip()
    ssh("initiator", "umount /mnt/c")
    result = {"grow_rc": grown.returncode, "fio_jobs_failed": fio_errors, "kernel_error_lines": int(kernel_errors),
              "same_wwn": wwn_before == wwn_after, "size_before": size_before, "size_after": size_after,
              "xfs_growfs_ok": growfs.returncode == 0}
    print("%s: grow under load: %s" % (name, result), flush=True)
    return result


def cell(values):
    if not values:
        return "-"
    return "%.0f (%.0f-%.0f)" % (statistics.median(values), min(values), max(values)) if max(values) >= 100 else \
        "%.1f (%.1f-%.1f)" % (statistics.median(values), min(values), max(values))


def report(results, names, jobs):
    print()
    print("vDisk data path, 1 GiB LUNs, %s, %d rounds x %d s per job; median (min-max); IOPS unless MiB/s"
          % (results.get("accel"), results["reps"], results["runtime"]))
    for side in ("remote", "local"):
        if not results[side]:
            continue
        print()
        print("%s:" % ("from the initiator over iSCSI" if side == "remote" else "inside the storage VM, LIO's I/O"))
        print("| export | " + " | ".join("%s%s" % (j, " MiB/s" if j in UNITS else "") for j in jobs) + " |")
        print("|---" * (len(jobs) + 1) + "|")
        for name in names:
            row = [cell(results[side].get(name, {}).get(j, [])) for j in jobs]
            print("| %s | %s |" % (name, " | ".join(row)))
        if side == "remote" and "raw" in results[side]:
            print()
            print("share of raw (median / median):")
            raw = results[side]["raw"]
            for name in names:
                shares = ["%.0f%%" % (100 * statistics.median(results[side][name][j]) / statistics.median(raw[j]))
                          for j in jobs]
                print("  %-12s %s" % (name, "  ".join("%s %s" % (j, s) for j, s in zip(jobs, shares))))
    if results["cuts"]:
        print()
        print("power-cuts of the storage VM during fsync'd writes (XFS on the LUN):")
        for name, r in results["cuts"].items():
            lost = sum(c["acked"] - c["intact"] for c in r["cuts"])
            spanning = sum(not o["intact"] for c in r["cuts"] for o in c.get("outages", []))
            print("  %-12s %d cuts, %d acknowledged records, %d lost (%d of them spanning a cut); outage %s s; "
                  "flushes per fsync %.2f; xfs %s"
                  % (name, len(r["cuts"]), sum(c["acked"] for c in r["cuts"][-1:]), lost, spanning,
                     "/".join(str(c["outage_s"]) for c in r["cuts"]), r["flushes_per_fsync"],
                     "clean" if r["xfs_clean"] else "NOT clean"))
    if results["restart_probe"]:
        print()
        print("restart probe: unflushed 4k writes every 20 ms, the storage VM killed and booted, then a flush:")
        for name, tries in results["restart_probe"].items():
            print("  %-12s %d tries; completed before the cut %s; lost %s (spanning %s s); flush after the restart %s"
                  % (name, len(tries), "/".join(str(t["written_before_cut"]) for t in tries),
                     "/".join(str(t["lost"]) for t in tries), "/".join(str(t["lost_span_s"]) for t in tries),
                     "/".join(sorted(set(t["flush_after_restart"] for t in tries)))))
    if results["grow"]:
        print()
        print("grow by 512 MiB under four O_DIRECT writers and a reader:")
        for name, r in results["grow"].items():
            print("  %-12s fio jobs failed %d, kernel I/O error lines %d, same WWN %s, %d -> %d MiB, xfs_growfs %s"
                  % (name, r["fio_jobs_failed"], r["kernel_error_lines"], r["same_wwn"], r["size_before"] >> 20,
                     r["size_after"] >> 20, "ok" if r["xfs_growfs_ok"] else "FAILED"))
    if results.get("attributes"):
        print()
        print("LIO's attributes per export:")
        for name in names:
            print("  %-12s %s" % (name, " ".join("%s=%s" % kv for kv in sorted(results["attributes"][name].items()))))


if __name__ == "__main__":
    main()
