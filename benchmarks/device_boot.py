"""Benchmark: what the vDisk stage costs a device's boot.

Runs on a lab device that boots a golden image with the clusterducks-vdisk
module (`make demo` leaves one: --lab demo --device node01). It boots the
device --rounds times with the module on and as often with it switched off
(rd.vdisk=0: the plain image, nothing persists), alternating on/off so that
background load hits both alike, and prints:
  - whole boots: qemu start to SSH answering, and systemd-analyze's
    kernel / initrd / userspace split, median and range, on vs off, with the
    absolute difference and the ratio;
  - the module's own phases from /run/clusterducks/timing (network, API,
    login, disk, mounts, overlay), median and range.
The off boots have no vDisk, so the image's first-boot units (SSH host keys)
run at every off boot; their time is printed too and the comparison is shown
both with and without it.

Usage: python3 benchmarks/device_boot.py [--lab demo] [--device node01] [--rounds 5] [--json FILE]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "lab"))
import cdlab  # noqa: E402  pylint: disable=wrong-import-position

PHASES = ["network", "api", "login", "disk", "mounts", "overlay"]


def ssh(vm, cmd):
    return subprocess.run(vm.ssh_command([cmd]), capture_output=True, text=True, check=True,
                          stdin=subprocess.DEVNULL, timeout=60).stdout


def boot(lab, vm, module_on):
    cdlab.stop_all([vm])
    conf = vm.conf
    args = [a for a in conf.get("kernel_args", []) if a != "rd.vdisk=0"]
    conf["kernel_args"] = args if module_on else args + ["rd.vdisk=0"]
    vm.save_conf(conf)
    took = cdlab.boot(lab, [vm], 400)[vm.name]
    analyze = ssh(vm, "systemd-analyze time | head -n 1")
    split = {}
    for part in ("kernel", "initrd", "userspace"):
        for chunk in analyze.split("+"):
            if "(%s)" % part in chunk:
                split[part] = seconds(chunk.split("(")[0].strip().split("=")[-1].strip())
    keygen = ssh(vm, "systemd-analyze blame --no-pager | awk '$2 == \"ssh-hostkeys.service\" {print $1}'").strip()
    errors = ssh(vm, "journalctl -k -b --no-pager -o short-monotonic | grep -iE 'conn error|ping timeout' || true").strip()
    # The guest's own record of being stalled by the host (TCG on a busy machine).
    stalls = ssh(vm, "journalctl -k -b --no-pager -o cat | grep -ciE 'soft lockup|Long readout interval|rcu.*stall' || true")
    blame = ssh(vm, "systemd-analyze blame --no-pager | head -n 8")
    result = {"module": module_on, "to_ssh": took, "keygen": seconds(keygen) if keygen else 0.0,
              "iscsi_errors": errors.splitlines(), "stalls": int(stalls.strip() or 0), "blame": blame.splitlines(),
              **split}
    if module_on:
        marks = dict(line.split() for line in ssh(vm, "cat /run/clusterducks/timing").splitlines())
        previous = float(marks["start"])
        for phase in PHASES:
            result["phase_" + phase] = float(marks[phase]) - previous
            previous = float(marks[phase])
        result["vdisk_stage"] = float(marks["overlay"]) - float(marks["network"])
    return result


def seconds(text):
    """'1min 2.5s' / '850ms' / '3.2s' -> seconds."""
    total = 0.0
    for token in text.split():
        if token.endswith("ms"):
            total += float(token[:-2]) / 1000
        elif token.endswith("min"):
            total += float(token[:-3]) * 60
        elif token.endswith("s"):
            total += float(token[:-1])
    return total


def summary(values):
    return "%6.1f s  (%.1f-%.1f)" % (statistics.median(values), min(values), max(values))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--lab", default="demo")
    p.add_argument("--device", default="node01")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args()
    lab = cdlab.Lab(args.lab)
    vm = lab.vm(args.device)
    if not vm.exists:
        sys.exit("no VM %s in lab %s: run `make demo` first" % (args.device, args.lab))
    runs = []
    started = time.monotonic()
    try:
        for n in range(args.rounds):
            for module_on in (True, False) if n % 2 == 0 else (False, True):
                runs.append(boot(lab, vm, module_on))
                r = runs[-1]
                print("boot %2d  module %-3s  to SSH %5.1f s  initrd %5.1f s  userspace %5.1f s%s" % (
                    len(runs), "on" if module_on else "off", r["to_ssh"], r.get("initrd", 0), r.get("userspace", 0),
                    "  vDisk stage %.1f s" % r["vdisk_stage"] if module_on else "  host keys %.1f s" % r["keygen"]),
                    flush=True)
                for line in r["iscsi_errors"]:
                    print("         iSCSI: %s" % line)
                if r["stalls"]:
                    print("         the guest logged %d stall(s) (soft lockup, long clock readout, RCU)" % r["stalls"])
    finally:
        # Leave the device as it was: module on.
        conf = vm.conf
        conf["kernel_args"] = [a for a in conf.get("kernel_args", []) if a != "rd.vdisk=0"]
        vm.save_conf(conf)
    on = [r for r in runs if r["module"]]
    off = [r for r in runs if not r["module"]]
    print("\n%d boots each, alternating, %.0f s in all (%s)"
          % (args.rounds, time.monotonic() - started, cdlab.detect_accel(vm.conf["image"])))
    print("%-22s %-24s %-24s %s" % ("", "module on", "module off (rd.vdisk=0)", "difference of medians"))
    for key in ("to_ssh", "kernel", "initrd", "userspace"):
        a = [r.get(key, 0) for r in on]
        b = [r.get(key, 0) for r in off]
        diff = statistics.median(a) - statistics.median(b)
        print("%-22s %-24s %-24s %+.1f s (%.0f%%)"
              % (key, summary(a), summary(b), diff, 100 * diff / statistics.median(b)))
    a = [r["to_ssh"] for r in on]
    b = [r["to_ssh"] - r["keygen"] for r in off]
    diff = statistics.median(a) - statistics.median(b)
    print("%-22s %-24s %-24s %+.1f s (%.0f%%)"
          % ("to_ssh, off w/o keygen", summary(a), summary(b), diff, 100 * diff / statistics.median(b)))
    print("iSCSI connection errors after switch_root: %d in %d boots with the module"
          % (sum(len(r["iscsi_errors"]) for r in on), len(on)))
    for label, runs_of in (("module on", on), ("module off", off)):
        print("\nslowest units, last boot with the %s (systemd-analyze blame):" % label)
        for line in runs_of[-1]["blame"]:
            print("  " + line.strip())
    print("\nthe module's phases (module on):")
    for phase in PHASES:
        print("  %-10s %s" % (phase, summary([r["phase_" + phase] for r in on])))
    print("  %-10s %s   (network up -> overlay mounted)" % ("vDisk", summary([r["vdisk_stage"] for r in on])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=2)


if __name__ == "__main__":
    main()
