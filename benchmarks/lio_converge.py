"""Benchmark: converge N vDisks + N targets with the collection's modules vs a targetcli loop.

Runs in the lab (one storage VM) and prints its figures:
  - the modules: one ansible-playbook run (vdisk + iscsi_target, N items each),
    timed from the controller as a user sees it, then the idempotent re-run;
  - the baseline: the same objects with one `targetcli` call per object
    (backstore, target, LUN, ACL: 4N calls), timed inside the VM.
A full targetcli loop at N=200 takes hours under TCG (every call loads and
saves the whole configuration, so calls slow down as it grows). By default the
baseline is measured on two samples of --sample objects each: on an empty LIO
(the loop's first calls) and on a LIO that already holds N objects (its last
calls), and the loop is estimated as 4N calls at the mean of the two per-call
costs (linear growth). --baseline-full runs the whole loop instead.

Usage: python3 benchmarks/lio_converge.py [--count 200] [--sample 10] [--baseline-full] [--keep]
"""

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CDLAB = [sys.executable, os.path.join(REPO, "lab", "cdlab"), "--lab", "bench"]
VENV = os.path.join(REPO, ".venv", "bin")


def sh(argv, **kw):
    result = subprocess.run(argv, text=True, capture_output=True, check=False, **kw)
    if result.returncode != 0:
        sys.exit("benchmark step failed: %s\n%s\n%s" % (" ".join(argv), result.stdout[-3000:], result.stderr[-3000:]))
    return result.stdout


def ssh(cmd, stdin=None):
    return sh(CDLAB + ["ssh", "storage", cmd], input=stdin)


def playbook(name, env, extra=()):
    started = time.monotonic()
    out = sh([os.path.join(VENV, "ansible-playbook"), "-i", os.path.join(REPO, ".lab", "bench", "inventory.yml"),
              os.path.join(HERE, "lio_converge", name), *extra], env=env)
    took = time.monotonic() - started
    recap = re.search(r"storage\s+: ok=(\d+)\s+changed=(\d+)", out)
    return took, int(recap.group(2))


def targetcli_loop(first, last):
    out = ssh("bash /root/targetcli_loop.sh tc %d %d" % (first, last))
    m = re.search(r"calls=(\d+) seconds=([\d.]+)", out)
    return int(m.group(1)), float(m.group(2))


def clear_baseline():
    """Remove the targetcli sample's objects in one rtslib process (not 2 calls each)."""
    ssh("python3 -c 'import rtslib_fb as r; root = r.RTSRoot(); "
        "[t.delete() for t in list(root.targets) if \":tc\" in t.wwn]; "
        "[s.delete() for s in list(root.storage_objects) if s.name.startswith(\"tc\")]; "
        "root.save_to_file()' && rm -rf /srv/targetcli-baseline")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--sample", type=int, default=10, help="objects per baseline sample")
    p.add_argument("--baseline-full", action="store_true", help="run the whole targetcli loop")
    p.add_argument("--keep", action="store_true", help="keep the VM afterwards")
    args = p.parse_args()

    env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_PIPELINING="True",
               ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, "build", "collections"),
               ANSIBLE_HOME=os.path.join(REPO, ".ansible"), ANSIBLE_NOCOLOR="1")
    link = os.path.join(REPO, "build", "collections", "ansible_collections", "clusterducks", "vdisk")
    if not os.path.islink(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)

    print("booting the storage VM ...", flush=True)
    sh(CDLAB + ["up", "storage", "--disk", "24G", "--memory", "2048"])
    try:
        playbook("setup.yml", env)
        with open(os.path.join(HERE, "lio_converge", "targetcli_loop.sh")) as f:
            ssh("cat > /root/targetcli_loop.sh", stdin=f.read())
        n = args.count
        rows = []

        calls_a, secs_a = targetcli_loop(1, args.sample)
        rows.append(("targetcli, first %d objects (empty LIO)" % args.sample, secs_a, "%d calls, %.2f s/call"
                     % (calls_a, secs_a / calls_a)))
        clear_baseline()

        t_mod, changed = playbook("converge.yml", env, ["-e", "bench_count=%d" % n])
        rows.append(("modules: converge %d vDisks + %d targets" % (n, n), t_mod, "changed tasks: %d" % changed))
        t_rerun, changed_rerun = playbook("converge.yml", env, ["-e", "bench_count=%d" % n])
        rows.append(("modules: idempotent re-run", t_rerun, "changed tasks: %d" % changed_rerun))
        objects = ssh("ls /sys/kernel/config/target/iscsi | grep -c bench || true").strip()

        calls_b, secs_b = targetcli_loop(1, args.sample)
        rows.append(("targetcli, %d more objects on top of %d" % (args.sample, n), secs_b,
                     "%d calls, %.2f s/call" % (calls_b, secs_b / calls_b)))
        clear_baseline()

        if args.baseline_full:
            ssh("targetcli clearconfig confirm=True >/dev/null; for d in /srv/vdisks/bench*; do "
                "btrfs subvolume delete $d >/dev/null; done")
            calls, t_tc = targetcli_loop(1, n)
            how = "measured, %d calls" % calls
        else:
            per_call = (secs_a / calls_a + secs_b / calls_b) / 2
            t_tc = per_call * 4 * n
            how = "estimated: %d calls x %.2f s (mean of the two samples)" % (4 * n, per_call)
        rows.append(("targetcli loop, %d objects x 4 calls" % n, t_tc, how))

        print()
        print("LIO converge benchmark, N=%d (one storage VM, %s; %s targets live after the run)"
              % (n, open(os.path.join(REPO, ".lab", "bench", "storage", "qemu.cmdline")).read().split("-accel ")[1]
                 .split()[0], objects))
        for label, secs, note in rows:
            print("  %-52s %9.1f s   %s" % (label, secs, note))
        print("  %-52s %9.1fx" % ("speed-up: targetcli loop / module converge", t_tc / t_mod))
        print("  %-52s %9.1f %%" % ("idempotent re-run as a share of the targetcli loop", 100 * t_rerun / t_tc))
    finally:
        if not args.keep:
            sh(CDLAB + ["destroy"])


if __name__ == "__main__":
    main()
