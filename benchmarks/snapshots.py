"""Benchmark: what 1-minute snapshots cost on the write path, and a round over many vDisks.

One lab run: a storage VM with the default data path (an LVM thin pool, 64 KiB
chunks, zeroing off, a thin volume exported as a LIO block backstore with
emulate_tpu/tpws, as the storage_host role makes it) and the collection's
snapshot code (roles/storage_host/files/vdisk_snapshots); an initiator VM
logged in to it.

The thin volume is filled once with incompressible data, then each job runs
in alternating pairs, "off" then "on" (or the reverse, alternating):

  off  no snapshot of the volume exists (all deleted before the run);
  on   a round (clusterducks-vdisk-snapshots round, retention minutely: 1)
       with no I/O running leaves a snapshot, as the previous minute's round
       would; the window opens just after the UTC minute turns, and a second
       round 3 s into it snapshots the volume and prunes the first snapshot.
       So the window holds what a device sees every minute: one round (a
       snapshot and a prune) and the copy-on-write wave after it. The window
       is one interval (--runtime, 60 s by default).

Jobs (fio, libaio, O_DIRECT, new random incompressible data for every
write): 4k random write qd16 with uniform and zipf 1.2 offsets, 4k write +
fdatasync qd1, 1 MiB sequential write qd4; over working sets of 256 MiB and
2 GiB; from the initiator over iSCSI and, with --local (or --where local),
inside the storage VM
on the thin volume itself. It prints the median and range of IOPS (MiB/s for
1 MiB writes) and p99 latency per job, the on/off ratios, and the lowest
1-second IOPS of each on-run (from fio's 1-second IOPS logs, kept with --json).

--round-vdisks N: make N more thin volumes and time rounds over all of them:
the first round over them; then idle, and while fio writes to the first
volume, each with unchanged vDisks sharing their last snapshot (the default,
share_unchanged) and, as the baseline in the same run, without (every vDisk
suspended and snapshotted; idle also with round_workers 1, the baseline
for reading the write markers in threads); and rounds after a 4 KiB write
to every volume (none unchanged), with round_workers as the role sets it (4) and, as the
baseline, 1 (one vDisk at a time, as before) and 8, and without the
storage_host role's udev rules for vDisk volumes (LVM's rules only; all
other cases run with them, as the role installs them by default). It also
times how long udev then takes for the rounds' change events and the CPU it
used. --round-cases events: 200 resumes through libdevmapper (a udev
cookie on each change event, as the rounds resumed before) and through the
ioctl the rounds use now (none), udev's CPU for each, twice; not in the
default set. --round-cases deep (not in the default set either): two rounds
over every vDisk changed with one entry each (minutely: 1), then each
vDisk seeded with the snapshots a year of 1-minute rounds leaves under
retention minutely 60, hourly 24, daily 7, weekly 4, monthly 12 (real
snapshots, about 100 per vDisk), and the same rounds over them, idle
rounds, and the listing, audit and check. --round-cases floor (not in the default set): the kernel
calls alone of a round over the many volumes, all written since (the expired snapshots' deletes, then
each volume's suspend, create_snap and resume, in the round's order and threads), twice: the floor under
the 'changed' rounds, measured on the same VM. --round-cases picks some of them. --round-cache write-back,write-through runs
them with the pool's disk as the lab gives it (a volatile write cache: each
dm-thin metadata commit flushes it, an fdatasync of the disk's file on the
host) and then told it has none (flushes end at once, as on a drive with
power-loss protection); it made no difference (docs/snapshots.md). The on/off
pairs run with --disk-cache (default: write-back, the lab's disk as it is).

--export write-through exports the volume the way a vDisk with
write_through: true is exported (fileio, write-back and AIO off: every write
synchronous), to measure what snapshots cost such a vDisk; "local" runs
bypass LIO and are the same either way.

Rounds run as the timer runs them (see round_command).

Usage: python3 benchmarks/snapshots.py [--pairs 3] [--runtime 60] [--jobs a,b] [--sets 256M,2G]
                                       [--local | --where remote,local]
                                       [--disk-cache write-back] [--round-vdisks 500]
                                       [--round-cases first,idle,fio,changed,events,deep,floor] [--round-cache write-back,write-through]
                                       [--export block|write-through] [--json FILE] [--keep]
"""

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LAB = "bench-snapshots"
CDLAB = [sys.executable, os.path.join(REPO, "lab", "cdlab"), "--lab", LAB]
TARGET = "iqn.2026-11.net.clusterducks:bench-snapshots"
DISK = "/dev/disk/by-id/virtio-cdlab-disk1"
VOLUME_BYTES = 2 << 30
SNAPSHOTS = "PYTHONPATH=/usr/lib/clusterducks-vdisk python3 -m vdisk_snapshots"
UNIT_TEMPLATE = os.path.join(REPO, "roles", "storage_host", "templates", "clusterducks-vdisk-snapshot.service.j2")
UDEV_RULES = ("55-vdisk-clusterducks.rules", "56-vdisk-clusterducks.rules")  # the storage_host role's
JOBS = {
    "randwrite-4k-qd16": "--rw=randwrite --bs=4k --iodepth=16",
    "randwrite-4k-qd16-zipf": "--rw=randwrite --bs=4k --iodepth=16 --random_distribution=zipf:1.2",
    "write-4k-fdatasync-qd1": "--rw=randwrite --bs=4k --iodepth=1 --ioengine=psync --fdatasync=1",
    "write-1m-qd4": "--rw=write --bs=1M --iodepth=4",
}
UNITS = {"write-1m-qd4": "MiB/s"}

PREPARE = r"""
set -euo pipefail
if ! vgs cdbench >/dev/null 2>&1; then
    pvcreate -q {disk}
    vgcreate -q cdbench {disk}
    lvcreate -q --type thin-pool --extents 90%FREE --chunksize 64K --zero n --poolmetadatasize 256M \
        -n pool cdbench
    lvcreate -q --type thin --virtualsize {size}b -n vdisk-bench --thinpool pool cdbench
fi
mkdir -p /var/lib/clusterducks-vdisk/lvm-thin/cdbench/pool/bench /etc/clusterducks-vdisk
echo '{{"name": "bench", "wwn": "5c2d6f0a-bench", "backing": "/dev/cdbench/vdisk-bench"}}' \
    > /var/lib/clusterducks-vdisk/lvm-thin/cdbench/pool/bench/vdisk.json
echo '{{"pool": "lvm-thin:cdbench/pool", "interval_minutes": 1, "retention": {{"minutely": 1}}}}' \
    > /etc/clusterducks-vdisk/snapshots.json
cat > /root/delete_snapshots.py <<'PY'
import subprocess
from vdisk_snapshots import thin_snapshots
def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    return p.returncode, p.stdout, p.stderr
snapshots = thin_snapshots.ThinSnapshots("lvm-thin:cdbench/pool", run)
_done, failures = snapshots.delete(snapshots.list())
assert not failures, failures
PY
rm -rf /usr/lib/clusterducks-vdisk && mkdir -p /usr/lib/clusterducks-vdisk
tar -C /usr/lib/clusterducks-vdisk -xz
"""

EXPORT = r"""
import sys
import rtslib_fb as r
ip, initiator, export = sys.argv[1], sys.argv[2], sys.argv[3]
r.RTSRoot()
if export == "write-through":  # as clusterducks.vdisk.vdisk makes it for write_through: true
    so = r.FileIOStorageObject("bench", dev="/dev/cdbench/vdisk-bench", wwn="5c2d6f0a-bench", write_back=False,
                               aio=False)
else:
    so = r.BlockStorageObject("bench", dev="/dev/cdbench/vdisk-bench", wwn="5c2d6f0a-bench")
so.set_attribute("emulate_tpu", "1")
so.set_attribute("emulate_tpws", "1")
tpg = r.TPG(r.Target(r.FabricModule("iscsi"), "%s"), 1)
tpg.set_attribute("authentication", "0")
tpg.set_attribute("generate_node_acls", "0")
tpg.enable = True
r.NetworkPortal(tpg, ip, 3260)
acl = r.NodeACL(tpg, initiator)
r.MappedLUN(acl, 0, r.LUN(tpg, 0, so))
""" % TARGET


def round_command():
    """A round as its timer runs it: a unit in system.slice with the scheduling
    settings of the role's unit (read from its template, so the two cannot
    differ). Run from an SSH session instead, at nice 0, the round lost the CPU
    to udev's workers, which handle each resumed vDisk's change event (a
    dmsetup process each): 500 vDisks took 21 s that way, 4.9 s as the unit."""
    props = []
    with open(UNIT_TEMPLATE) as f:
        for line in f:
            if line.split("=", 1)[0] in ("Nice", "IOSchedulingClass", "IOSchedulingPriority", "CPUWeight"):
                props += ["-p", line.strip()]
    return "systemd-run --quiet --wait --collect --pipe --slice=system.slice %s %s round" % (
        " ".join(props), SNAPSHOTS.replace("PYTHONPATH=", "env PYTHONPATH=", 1))


ROUND = round_command()


def udev_rules():
    """{file name: text} of the storage_host role's udev rules for vDisk volumes, for the benchmark's volume
    group (rendered with Jinja2, Ansible's, from the venv)."""
    import jinja2
    rules = {}
    for name in UDEV_RULES:
        with open(os.path.join(REPO, "roles", "storage_host", "templates", name + ".j2")) as f:
            rules[name] = jinja2.Template(f.read(), keep_trailing_newline=True).render(
                ansible_managed="benchmarks/snapshots.py", storage_host_pool_vg="cdbench")
    return rules


# A resume's change event, with libdevmapper's udev cookie (as the rounds resumed before) and with the ioctl
# the rounds use now (no cookie): udev's CPU for the events of 200 resumes, each way, twice.
# --round-cases deep: the retention of a pool that keeps a month's history (the classes), so that every
# vDisk holds about a hundred entries; the rounds and the listing over them against the same rounds over one.
DEEP_RETENTION = {"minutely": 60, "hourly": 24, "daily": 7, "weekly": 4, "monthly": 12}
DEEP_LABEL = "retention minutely 60, hourly 24, daily 7, weekly 4, monthly 12"


def deep_times(now, retention, snapshot_schedule):
    """The times of the entries retention keeps at ``now`` of 1-minute rounds that ran for a year: one a minute for
    the last hour, then the first of each hour, day, week and month (every 30 days here), the current minute left
    to the rounds."""
    current = now - now % 60
    candidates = set()
    for step, count in ((60, 60), (3600, 24), (86400, 7), (7 * 86400, 4), (30 * 86400, 12)):
        candidates.update(current - step * k for k in range(1, count + 1))
    return sorted(snapshot_schedule.keep(sorted(candidates), retention, now))


sys.path.insert(0, os.path.join(REPO, "roles", "storage_host", "files"))
from vdisk_snapshots import snapshot_schedule  # noqa: E402  (the collection's own retention rules)
DEEP_ENTRIES = len(deep_times(time.time(), DEEP_RETENTION, snapshot_schedule)) + 1  # and the round's own

# One round's work of snapshots per seeded time, oldest first, each with the clock at that time: real thin
# snapshots (share_unchanged off), as if every vDisk had changed every minute.
SEED_DEEP = r"""
import json, subprocess, sys, time
sys.path.insert(0, '/usr/lib/clusterducks-vdisk')
from vdisk_snapshots import snapshot_schedule, thin_snapshots
%s
def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    return p.returncode, p.stdout, p.stderr
times = deep_times(time.time(), json.loads(sys.argv[1]), snapshot_schedule)
started = time.time()
for i, t in enumerate(times):
    snaps = thin_snapshots.ThinSnapshots('lvm-thin:cdbench/pool', run, clock=lambda t=t: t, workers=4)
    volumes = sorted(snaps.volumes())
    _created, failures, _shared = snaps.round_snapshots(volumes, snapshot_schedule.auto_name(t),
                                                        share_unchanged=False)
    assert not failures, failures
    snaps.close()
    if i %% 10 == 9:
        print('  seeded %%d of %%d, %%.0f s' %% (i + 1, len(times), time.time() - started), file=sys.stderr, flush=True)
subprocess.run(['udevadm', 'settle', '--timeout=600'], check=True)
snaps = thin_snapshots.ThinSnapshots('lvm-thin:cdbench/pool', run)
usage = snaps.pool_usage()
print('seeded %%d snapshots of each of %%d vDisks (%%d entries in all) in %%.0f s; pool data %%.1f%%%% metadata %%.1f%%%%' %% (
    len(times), len(volumes), len(snaps.list()), time.time() - started, usage['data_percent'],
    usage['metadata_percent']))
""" % inspect.getsource(deep_times)

# The listing, the audit (thin_ls over every thin device) and the check, timed inside the storage VM.
DEEP_LISTING = r"""
import subprocess, time
for what, argv in (("list --json", ["list", "--json"]), ("audit", ["audit"]), ("check", ["check"])):
    started = time.time()
    p = subprocess.run("%s " + " ".join(argv), shell=True, capture_output=True, text=True)
    took = time.time() - started
    detail = "%%d entries" %% p.stdout.count('"vdisk"') if what.startswith("list") else p.stdout.strip().replace("\n", "; ")
    print("%%s: %%.2f s, exit %%d, %%s" %% (what, took, p.returncode, detail[:300]))
""" % SNAPSHOTS

# One 4 KiB write (O_DIRECT, synced) to each of the many volumes, through its device as LIO's would go;
# through a node of its own, not /dev's: closing a node udev watches (LVM's rules set the watch) after
# writing makes a change event, which LIO's writes do not.
WRITE_ALL = r"""
import glob, mmap, os, stat
def write_all():
    buf = mmap.mmap(-1, 4096); buf.write(os.urandom(4096))
    node = '/root/bench-node'  # /run is nodev
    for dev in sorted(glob.glob('/dev/mapper/cdbench-vdisk--many*')):
        os.mknod(node, stat.S_IFBLK | 0o600, os.stat(dev).st_rdev)
        fd = os.open(node, os.O_WRONLY | os.O_DIRECT | os.O_DSYNC)
        os.pwritev(fd, [buf], 0); os.close(fd); os.unlink(node)
"""

# --round-cases floor: the kernel calls of a round over the many volumes, all changed, and nothing else (no
# lvs, marker, catalog or Python start): the expired snapshots' deletes, then each volume's suspend,
# create_snap and resume, in the round's order and its default number of threads, through the same
# devmapper.py. What a round cannot go below on this VM; run as the unit runs a round.
KERNEL_CALLS = WRITE_ALL + r"""
import subprocess, sys, threading, time
sys.path.insert(0, '/usr/lib/clusterducks-vdisk')
from vdisk_snapshots import devmapper, snapshot_schedule
dm = devmapper.DeviceMapper()
POOL = 'cdbench-pool-tpool'
WORKERS = snapshot_schedule.DEFAULT_ROUND_WORKERS
names = sorted(os.path.basename(p) for p in glob.glob('/dev/mapper/cdbench-vdisk--many*'))
origin = dict((n, int(dm.table(n)[1].split()[1])) for n in names)
PREVIOUS, NEW = (1 << 24) - 2048, (1 << 24) - 1024  # far above the catalog's ids, which count up from 2^23
def each(func):
    todo = iter(enumerate(names)); lock = threading.Lock()
    def work():
        while True:
            with lock:
                item = next(todo, None)
            if item is None:
                return
            func(*item)
    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    [t.start() for t in threads]; [t.join() for t in threads]
def snap(base):
    def one(i, name):
        dm.suspend(name)
        try:
            dm.message(POOL, 'create_snap %d %d' % (base + i, origin[name]))
        finally:
            dm.resume(name)
    return one
def delete(base):
    return lambda i, name: dm.message(POOL, 'delete %d' % (base + i))
def settle():
    subprocess.run(['udevadm', 'settle', '--timeout=300'], check=True)
each(snap(PREVIOUS))  # the previous round's snapshots
write_all()
settle()
started = time.time()
each(delete(PREVIOUS))
pruned = time.time()
each(snap(NEW))
done = time.time()
settle()
settled = time.time()
each(delete(NEW))
settle()
print('%d deletes %.2f s, then %d suspend + create_snap + resume %.2f s: %.2f s in %d threads; '
      "udev's queue drained %.1f s after" % (len(names), pruned - started, len(names), done - pruned,
                                            done - started, WORKERS, settled - done))
"""

RESUME_EVENTS = r"""
import glob, os, subprocess, sys, time
sys.path.insert(0, '/usr/lib/clusterducks-vdisk')
from vdisk_snapshots import devmapper
dm = devmapper.DeviceMapper()
names = sorted(os.path.basename(p) for p in glob.glob('/dev/mapper/cdbench-vdisk--many*'))[:200]
def udev_cpu():
    return int(subprocess.run(['systemctl', 'show', 'systemd-udevd', '-p', 'CPUUsageNSec', '--value'],
                              capture_output=True, text=True).stdout) / 1e9
for way in ('libdevmapper (udev cookie)', 'ioctl (no cookie)') * 2:
    subprocess.run(['udevadm', 'settle', '--timeout=300'], check=True)
    cpu, start = udev_cpu(), time.time()
    for name in names:
        dm.suspend(name)
        if way.startswith('ioctl'):
            dm.resume(name)
        else:
            dm._run(5, name, 'resume')  # DM_DEVICE_RESUME through libdevmapper
    done = time.time()
    subprocess.run(['udevadm', 'settle', '--timeout=300'], check=True)
    print('%d resumes through %s: udev used %.1f s of CPU, its queue drained %.1f s after' % (
        len(names), way, udev_cpu() - cpu, time.time() - done), flush=True)
"""


def sh(argv, **kw):
    result = subprocess.run(argv, text=True, capture_output=True, check=False, **kw)
    if result.returncode != 0:
        sys.exit("benchmark step failed: %s\n%s\n%s" % (" ".join(argv)[:300], result.stdout[-3000:],
                                                        result.stderr[-3000:]))
    return result.stdout


def ssh(vm, cmd, stdin=None):
    # Under TCG a storage VM busy with udev's events may not answer SSH's banner in time; the command did not
    # run then (ssh exits 255 before it starts), so trying again is safe.
    for _attempt in range(5):
        result = subprocess.run(CDLAB + ["ssh", vm, cmd], text=True, capture_output=True, check=False, input=stdin)
        if result.returncode != 255 or "banner exchange" not in result.stderr:
            break
        time.sleep(5)
    if result.returncode != 0:
        sys.exit("benchmark step failed: ssh %s %s\n%s\n%s"
                 % (vm, cmd[:300], result.stdout[-3000:], result.stderr[-3000:]))
    return result.stdout


def size_bytes(text):
    return int(text[:-1]) << {"M": 20, "G": 30}[text[-1]]


def fio_cmd(job, path, working_set, runtime, log):
    return ("fio --name={job} --filename={path} --size={ws} --time_based --runtime={rt} --ramp_time=2 "
            "--randrepeat=0 --norandommap --refill_buffers --buffer_compress_percentage=0 --ioengine=libaio "
            "--direct=1 {args} --write_iops_log={log} --log_avg_msec=1000 --output-format=json").format(
                job=job, path=path, ws=working_set, rt=runtime, args=JOBS[job], log=log)


def figures(job, out, log_text):
    data = json.loads(out[out.index("{"):])["jobs"][0]["write"]
    value = data["bw"] / 1024.0 if job in UNITS else data["iops"]
    p99 = data["clat_ns"]["percentile"].get("99.000000", 0) / 1e6
    per_second = [int(line.split(",")[1]) for line in log_text.splitlines() if line.count(",") >= 2]
    return {"value": value, "p99_ms": p99, "iops_1s": per_second}


class Bench(object):
    def __init__(self, args):
        self.args = args
        vms = {vm["name"]: vm for vm in json.loads(sh(CDLAB + ["status"]))}
        self.ip = vms["storage"]["storage_ip"]
        code = subprocess.run(["tar", "-C", os.path.join(REPO, "roles", "storage_host", "files"), "-chz",
                               "vdisk_snapshots"], capture_output=True, check=True).stdout
        script = PREPARE.format(disk=DISK, size=VOLUME_BYTES)
        subprocess.run(CDLAB + ["ssh", "storage", "bash -c %s" % shquote(script)], input=code, check=True,
                       capture_output=True)
        self.rules_on = None
        self.seeded = False
        self.udev_rules(True)  # the storage_host role installs them by default
        print("filling the thin volume once with incompressible data ...", flush=True)
        ssh("storage", "[ -e /root/filled ] || { fio --name=fill --filename=/dev/cdbench/vdisk-bench --size=%d "
            "--rw=write --bs=1M --iodepth=8 --ioengine=libaio --direct=1 --refill_buffers "
            "--buffer_compress_percentage=0 --end_fsync=1 >/dev/null && touch /root/filled; }" % VOLUME_BYTES)
        initiator = ssh("initiator", "sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi").strip()
        ssh("storage", "python3 -c %s %s %s %s" % (shquote(EXPORT), self.ip, initiator, args.export))
        link = "/dev/disk/by-path/ip-%s:3260-iscsi-%s-lun-0" % (self.ip, TARGET)
        ssh("initiator", "iscsiadm -m discovery -t st -p %s >/dev/null && iscsiadm -m node -T %s --login >/dev/null; "
            "for _ in $(seq 60); do [ -e %s ] && exit 0; sleep 1; done; exit 1" % (self.ip, TARGET, link))
        self.lun = ssh("initiator", "readlink -f %s" % link).strip()
        self.disk_cache(args.disk_cache)
        with open(os.path.join(REPO, ".lab", LAB, "storage", "qemu.cmdline")) as f:
            self.accel = f.read().split("-accel ")[1].split()[0]

    def udev_rules(self, on):
        """The role's udev rules for vDisk volumes on (as it installs them) or off (LVM's rules only,
        storage_host_pool_udev_rules: false)."""
        if on == self.rules_on:
            return
        for name, text in udev_rules().items():
            path = "/etc/udev/rules.d/" + name
            ssh("storage", ("cat > %s" % path) if on else ("rm -f %s" % path), stdin=text if on else None)
        ssh("storage", "udevadm control --reload")
        self.rules_on = on

    def disk_cache(self, mode):
        """Tell the storage VM's kernel whether the pool's disk has a volatile
        write cache. dm-thin flushes the pool's data device before each
        metadata commit (per snapshot, per prune, and every second while the
        copy-on-write after a snapshot maps new blocks). "write-back": the
        lab's disk as it is, a flush is an fdatasync of its file on the host,
        which under fio holds the writer's dirty data. "write-through":
        flushes end at once, as on a drive with power-loss protection."""
        ssh("storage", "echo '%s' > /sys/block/$(basename $(readlink -f %s))/queue/write_cache"
            % (mode.replace("-", " "), DISK))

    def delete_all_snapshots(self):
        ssh("storage", "PYTHONPATH=/usr/lib/clusterducks-vdisk python3 /root/delete_snapshots.py")

    def run(self, where, job, working_set, snapshots_on):
        log = "/run/iops-%d" % time.time()
        path = self.lun if where == "remote" else "/dev/cdbench/vdisk-bench"
        vm = "initiator" if where == "remote" else "storage"
        if snapshots_on:
            # As every minute on a host with 1-minute rounds: the previous
            # round's snapshot exists, and the window's round takes a new one
            # (every chunk is shared again: the copy-on-write wave of one
            # interval) and prunes that one. Retention is one minute and
            # keeps the first snapshot of each UTC minute, so the previous
            # snapshot is taken, with no I/O running, before the minute turns,
            # and the window opens just after it, its round 3 s in. The window
            # thus holds one wave, as a minute does in steady state (plus the
            # previous snapshot's for those 3 s).
            ssh("storage", "%s >/dev/null" % ROUND)
            time.sleep(60 - time.time() % 60 + 0.5)
            trigger = subprocess.Popen(CDLAB + ["ssh", "storage", "sleep 4; %s" % ROUND],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        else:
            self.delete_all_snapshots()
        out = ssh(vm, fio_cmd(job, path, working_set, self.args.runtime, log))
        log_text = ssh(vm, "cat %s_iops.1.log; rm -f %s_iops.1.log" % (log, log))
        result = figures(job, out, log_text)
        if snapshots_on:
            round_out, _err = trigger.communicate()
            result["round"] = round_out.strip()
        return result

    def round_over_many(self, count):
        print("making %d more thin volumes ..." % count, flush=True)
        ssh("storage", "existing=$(lvs --noheadings -o lv_name cdbench | grep -c vdisk-many || true); "
            "for i in $(seq $((existing + 1)) %d); do echo \"lvcreate -q --type thin -V 64M -n vdisk-many$i "
            "--thinpool pool cdbench\"; done | lvm >/dev/null 2>&1; for i in $(seq 1 %d); do "
            "d=/var/lib/clusterducks-vdisk/lvm-thin/cdbench/pool/many$i; mkdir -p $d; "
            "echo \"{\\\"name\\\": \\\"many$i\\\", \\\"wwn\\\": \\\"w$i\\\", \\\"backing\\\": "
            "\\\"/dev/cdbench/vdisk-many$i\\\"}\" > $d/vdisk.json; done" % (count, count))
        results = {}
        for cache in self.args.round_cache.split(","):
            self.disk_cache(cache)
            results.update(self._rounds(cache))
        return results

    # (case, label, fio on the first volume, a 4 KiB write to every volume first, share_unchanged,
    #  round_workers (None: the default), rounds, the role's udev rules on, DEEP_RETENTION (seeded once before
    #  the first such case) instead of the benchmark's minutely: 1)
    ROUND_CASES = (
        ("first", "first round over them (no vDisk known unchanged)", False, False, True, None, 1, True),
        ("idle", "idle, share_unchanged", False, False, True, None, 2, True),
        ("idle", "idle, share_unchanged, baseline: round_workers 1 (markers read one at a time)",
         False, False, True, 1, 2, True),
        ("idle", "idle, baseline: share_unchanged false", False, False, False, None, 2, True),
        ("fio", "under fio, share_unchanged", True, False, True, None, 2, True),
        ("fio", "under fio, baseline: share_unchanged false", True, False, False, None, 2, True),
        ("changed", "every vDisk written since the last round, share_unchanged", False, True, True, None, 2, True),
        ("changed", "every vDisk written since the last round, baseline: LVM's udev rules only "
         "(storage_host_pool_udev_rules false)", False, True, True, None, 2, False),
        ("changed", "every vDisk written since the last round, baseline: round_workers 1", False, True, True, 1, 2,
         True),
        ("changed", "every vDisk written since the last round, round_workers 8", False, True, True, 8, 2, True),
        ("deep", "every vDisk written since the last round, baseline: 1 entry per vDisk (minutely: 1)",
         False, True, True, None, 2, True, False),
        ("deep", "every vDisk written since the last round, %d entries per vDisk (%s)" % (DEEP_ENTRIES, DEEP_LABEL),
         False, True, True, None, 2, True, True),
        ("deep", "idle, share_unchanged, %d entries per vDisk" % DEEP_ENTRIES, False, False, True, None, 2, True, True),
    )

    def _rounds(self, cache):
        results = {}
        cases = self.args.round_cases.split(",")
        if "events" in cases:
            print(ssh("storage", "python3 -c %s" % shquote(RESUME_EVENTS)).strip(), flush=True)
        if "floor" in cases:
            self.udev_rules(True)
            label = ("the kernel calls alone of a round over the %d volumes, all changed (the baseline for "
                     "'every vDisk written'), disk cache %s" % (self.args.round_vdisks, cache))
            results[label] = []
            for _attempt in range(2):
                results[label].append(ssh("storage", "%s python3 -c %s" % (
                    ROUND.split(" env ", 1)[0], shquote(KERNEL_CALLS))).strip())
                print("%s: %s" % (label, results[label][-1]), flush=True)
        for case, label, load, write_all, share, workers, count, rules, *deep in self.ROUND_CASES:
            if case not in cases:
                continue
            deep = bool(deep and deep[0])
            if deep and not self.seeded:
                print(ssh("storage", "python3 -c %s %s" % (shquote(SEED_DEEP), shquote(json.dumps(DEEP_RETENTION))))
                      .strip(), flush=True)
                self.seeded = True
            self.udev_rules(rules)
            label = "%s, disk cache %s" % (label, cache)
            ssh("storage", "python3 -c %s" % shquote(
                "import json\n"
                "path = '/etc/clusterducks-vdisk/snapshots.json'\n"
                "config = json.load(open(path))\n"
                "config.pop('round_workers', None)\n"
                "config.update(json.loads(%r))\n"
                "json.dump(config, open(path, 'w'))\n" % json.dumps(dict(
                    {"share_unchanged": share, "retention": DEEP_RETENTION if deep else {"minutely": 1}},
                    **({"round_workers": workers} if workers else {})))))
            runs = []
            for _attempt in range(count):
                if write_all:
                    ssh("storage", "python3 -c %s" % shquote(WRITE_ALL + "write_all()\n"))
                if load:
                    writer = subprocess.Popen(CDLAB + ["ssh", "initiator", fio_cmd(
                        "randwrite-4k-qd16", self.lun, "2G", 40, "/run/many")], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
                    time.sleep(8)
                # udevadm settle first, and after: how long udev takes for the round's change events, and
                # how much CPU it used for them (from the round's start).
                cpu = "systemctl show systemd-udevd -p CPUUsageNSec --value"
                out = ssh("storage", "udevadm settle --timeout=300; c=$(%s); %s; s=$(date +%%s.%%N); "
                          "udevadm settle --timeout=300; echo \"udev settled $(date +%%s.%%N) $s $c $(%s)\""
                          % (cpu, ROUND, cpu))
                # The round's own lines may come after the echo (systemd-run --pipe relays them): pick it out.
                lines = out.strip().splitlines()
                settled = next(line for line in lines if line.startswith("udev settled ")).split()
                runs.append("%s; udev's queue of change events drained %.1f s after the round, udev used %.1f s "
                            "of CPU" % (" ".join(line for line in lines if not line.startswith("udev settled ")),
                                        float(settled[2]) - float(settled[3]), (int(settled[5]) - int(settled[4])) / 1e9))
                print("%s: %s" % (label, runs[-1]), flush=True)
                if load:
                    writer.communicate()
                time.sleep(61)  # the next round prunes this one's snapshots
            results[label] = runs
        if self.seeded:
            label = "listing, audit and check, %d entries per vDisk, disk cache %s" % (DEEP_ENTRIES, cache)
            results[label] = ssh("storage", "python3 -c %s" % shquote(DEEP_LISTING)).strip().splitlines()
            for line in results[label]:
                print("%s: %s" % (label, line), flush=True)
        return results


def shquote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def cell(values, fmt="%.0f"):
    if not values:
        return "-"
    return (fmt + " (" + fmt + "-" + fmt + ")") % (statistics.median(values), min(values), max(values))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--runtime", type=int, default=60, help="seconds per measured window (one interval)")
    p.add_argument("--jobs", help="comma-separated jobs (default: all)")
    p.add_argument("--sets", default="256M,2G", help="working sets (default: 256M,2G)")
    p.add_argument("--local", action="store_true", help="also run inside the storage VM on the thin volume")
    p.add_argument("--where", help="remote (from the initiator), local (inside the storage VM) or both, "
                                   "comma-separated (default: remote, and local with --local)")
    p.add_argument("--round-vdisks", type=int, default=0, help="time rounds over this many more vDisks")
    p.add_argument("--disk-cache", default="write-back", choices=("write-back", "write-through"),
                   help="the pool disk's cache mode for the on/off pairs (see Bench.disk_cache)")
    p.add_argument("--round-cases", default="first,idle,fio,changed",
                   help="which rounds over many vDisks, comma-separated: first, idle, fio (fio on one vDisk), changed "
                        "(every vDisk written since the last round: round_workers as configured, 1 and 8, and "
                        "without the role's udev rules), events (udev's CPU for resumes with and without a cookie), "
                        "deep (rounds and the listing with about 100 entries per vDisk against one), floor (the "
                        "kernel calls alone of a round in which every vDisk changed)")
    p.add_argument("--round-cache", default="write-back",
                   help="the pool disk's cache modes for the rounds over many vDisks, comma-separated, in turn "
                        "(default: write-back; write-back,write-through compares them)")
    p.add_argument("--export", default="block", choices=("block", "write-through"),
                   help="how LIO exports the thin volume: block (the default path) or write-through (fileio, "
                        "write-back and AIO off, as a vDisk with write_through: true); measured from the initiator")
    p.add_argument("--json", help="write every figure (with the 1-second IOPS logs) to this file")
    p.add_argument("--keep", action="store_true", help="keep the VMs afterwards")
    args = p.parse_args()
    if args.where and not set(args.where.split(",")) <= {"remote", "local"}:
        p.error("--where takes remote, local or both (comma-separated)")
    if not set(args.round_cases.split(",")) <= {"first", "idle", "fio", "changed", "events", "deep", "floor"}:
        p.error("--round-cases takes first, idle, fio, changed, events, deep and floor (comma-separated)")
    if not set(args.round_cache.split(",")) <= {"write-back", "write-through"}:
        p.error("--round-cache takes write-back, write-through or both (comma-separated)")
    jobs = args.jobs.split(",") if args.jobs else list(JOBS)
    sets = args.sets.split(",")
    print("booting the storage VM and the initiator ...", flush=True)
    sh(CDLAB + ["up", "storage", "--disk", "8G", "--memory", "2048", "--cpus", "2", "--timeout", "600"])
    sh(CDLAB + ["up", "initiator", "--memory", "1024", "--cpus", "2", "--timeout", "600"])
    results = {"runtime": args.runtime, "pairs": args.pairs, "disk_cache": args.disk_cache, "export": args.export,
               "runs": []}
    try:
        bench = Bench(args)
        results["accel"] = bench.accel
        wheres = args.where.split(",") if args.where else ["remote"] + (["local"] if args.local else [])
        for where in wheres:
            for working_set in sets:
                for job in jobs:
                    for pair in range(args.pairs):
                        order = (False, True) if pair % 2 == 0 else (True, False)
                        for on in order:
                            r = bench.run(where, job, working_set, on)
                            r.update({"where": where, "job": job, "set": working_set, "on": on, "pair": pair})
                            results["runs"].append(r)
                            print("%-6s %-24s %-4s %-3s %8.1f  p99 %6.2f ms  min 1 s %s" % (
                                where, job, working_set, "on" if on else "off", r["value"], r["p99_ms"],
                                min(r["iops_1s"]) if r["iops_1s"] else "-"), flush=True)
        if args.round_vdisks:
            results["round_over_many"] = bench.round_over_many(args.round_vdisks)
    finally:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
        if not args.keep:
            sh(CDLAB + ["destroy"])
    report(results)


def report(results):
    print("\nsnapshots on vs off (accel %s, %d s windows, %d pairs, pool disk cache %s, %s export): median (min-max)"
          % (results.get("accel"), results["runtime"], results["pairs"], results.get("disk_cache"),
             results.get("export", "block")))
    print("| where | job | working set | off | on | on/off | p99 off ms | p99 on ms | p99 on/off | lowest 1 s on |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    keys = []
    for r in results["runs"]:
        key = (r["where"], r["job"], r["set"])
        if key not in keys:
            keys.append(key)
    for key in keys:
        runs = [r for r in results["runs"] if (r["where"], r["job"], r["set"]) == key]
        off = [r["value"] for r in runs if not r["on"]]
        on = [r["value"] for r in runs if r["on"]]
        p_off = [r["p99_ms"] for r in runs if not r["on"]]
        p_on = [r["p99_ms"] for r in runs if r["on"]]
        low = [min(r["iops_1s"]) for r in runs if r["on"] and r["iops_1s"]]
        unit = " MiB/s" if key[1] in UNITS else ""
        print("| %s | %s | %s | %s%s | %s%s | %.0f %% | %s | %s | %.2f | %s |" % (
            key[0], key[1], key[2], cell(off, "%.1f"), unit, cell(on, "%.1f"), unit,
            100 * statistics.median(on) / statistics.median(off) if off and on else 0,
            cell(p_off, "%.2f"), cell(p_on, "%.2f"),
            statistics.median(p_on) / statistics.median(p_off) if p_off and p_on and statistics.median(p_off) else 0,
            cell(low)))
    for label, runs in (results.get("round_over_many") or {}).items():
        print("round over many vDisks, %s:" % label)
        for line in runs:
            print("  " + line)


if __name__ == "__main__":
    main()
