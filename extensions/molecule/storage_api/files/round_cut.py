"""Freeze a snapshot round at a chosen point, so that the power can be cut there.

  round_cut.py snapshot|prune

Starts the round as its timer would (the clusterducks-vdisk-snapshot
service), watches the catalog and device-mapper, and freezes the unit's
cgroup (every process of the round, at once) at:

  snapshot  a vDisk suspended for its snapshot (its initiator's I/O waits),
            or, if no poll catches one, with the round's snapshots half made
            (from the second try on, at the first sight of the phase);
  prune     the round's deletes half done.

Prints what it froze (JSON) and exits 0, the round left frozen: the next step
cuts the power. Exits 3 if the round ended before it could be frozen, or the
freeze landed after the phase (the round is thawed and finishes): run it again.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, '/usr/lib/clusterducks-vdisk')

UNIT = 'clusterducks-vdisk-snapshot.service'
CGROUP = '/sys/fs/cgroup/system.slice/%s' % UNIT
META = '/var/lib/clusterducks-vdisk/lvm-thin/vdisks/pool'
CATALOG = META + '/snapshots.sqlite'


def states(db):
    return dict(db.execute('SELECT state, count(*) FROM snapshot GROUP BY state').fetchall())


def states_after_cut(catalog):
    """The catalog's states as a power cut now would leave them.

    The frozen round may hold the catalog locked in a commit (seen in CI: every
    try of the prune cut read 'database is locked'), so the live file cannot be
    read. A copy of the file and its rollback journal, opened read-write, lets
    SQLite do what it does at the next boot: roll a hot journal back. An
    unfinished commit then shows the state before it; a finished one (journal
    gone) its result.
    """
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, 'catalog.sqlite')
        # The journal first: it is the commit point, and the round is frozen anyway.
        if os.path.exists(catalog + '-journal'):
            shutil.copyfile(catalog + '-journal', copy + '-journal')
        shutil.copyfile(catalog, copy)
        db = sqlite3.connect(copy)
        try:
            return states(db)
        finally:
            db.close()


def round_running():
    """Whether a process of the round is alive (its unit's cgroup is populated)."""
    try:
        with open(CGROUP + '/cgroup.events') as f:
            return 'populated 1' in f.read().split('\n')
    except FileNotFoundError:  # not started yet, or ended and its cgroup removed
        return False


def last_ended():
    """When the unit last went inactive (systemd's monotonic timestamp; '0' if never)."""
    return subprocess.run(['systemctl', 'show', '-p', 'InactiveEnterTimestampMonotonic', '--value', UNIT],
                          capture_output=True, text=True, check=False).stdout.strip()


def freeze(on):
    """Freeze (or thaw) every process of the round; returns once the kernel says it is done."""
    with open(CGROUP + '/cgroup.freeze', 'w') as f:
        f.write('1' if on else '0')
    deadline = time.time() + 10
    while time.time() < deadline:
        with open(CGROUP + '/cgroup.events') as f:
            if ('frozen %d' % on) in f.read().split('\n'):
                return
        time.sleep(0.01)
    raise SystemExit('the round did not %s within 10 s' % ('freeze' if on else 'thaw'))


def main(phase):
    # Imported here, not at the top: the unit tests load this file on a host without the package.
    from vdisk_snapshots import devmapper  # the storage host's own copy
    vdisks = sorted(d for d in os.listdir(META) if os.path.exists(os.path.join(META, d, 'vdisk.json')))
    names = dict((devmapper.dm_name('vdisks', 'vdisk-' + v), v) for v in vdisks)
    dm = devmapper.DeviceMapper()
    db = sqlite3.connect('file:%s?mode=ro' % CATALOG, uri=True, timeout=5)
    # A round thawed by a missed attempt may still run; starting the unit then would only watch it end.
    for _attempt in range(600):
        if subprocess.run(['systemctl', 'is-active', '--quiet', UNIT], check=False).returncode != 0:
            break
        time.sleep(0.1)
    ended_before = last_ended()
    subprocess.run(['systemctl', 'start', '--no-block', UNIT], check=True)
    next_look = time.time() + 1
    wanted = 'creating' if phase == 'snapshot' else 'deleting'
    # The first try waits up to 80 ms for a suspended vDisk (the cut that tests
    # the most); the next ones freeze at the first sight of the phase: with the
    # lab's bytecode cached, a whole round of 6 vDisks took 0.64 s and every
    # patient try missed the phase (2026-12-05).
    tries_file = '/run/round_cut.%s.tries' % phase
    tries = 0
    if os.path.exists(tries_file):
        with open(tries_file) as f:
            tries = int(f.read())
    with open(tries_file, 'w') as f:
        f.write('%d\n' % (tries + 1))
    patience = 0.08 if tries == 0 else 0.0
    deadline, seen, frozen_at, started = time.time() + 60, None, None, False
    while time.time() < deadline and frozen_at is None:
        # Read before the catalog: a round seen ended here showed its phase, if any, below.
        running = round_running()
        started = started or running
        if not started and time.time() >= next_look:
            # A round can start and end between two polls (0.64 s for 6 vDisks here): systemd tells.
            next_look = time.time() + 0.5
            started = last_ended() != ended_before
        try:
            counts = states(db)
        except sqlite3.OperationalError:  # the round holds the write lock a moment
            continue
        if counts.get(wanted):
            seen = seen or time.time()
            if phase == 'prune':
                frozen_at = 'deletes half done'
            else:
                suspended = [v for n, v in names.items() if dm.info(n)['suspended']]
                if suspended:
                    frozen_at = 'vDisks %s suspended for their snapshots (round_workers at once)' % ', '.join(suspended)
                elif time.time() - seen >= patience:
                    frozen_at = 'snapshots half made'
            if frozen_at:
                freeze(True)
        elif seen:
            break  # the phase is over: missed
        elif started and not running:
            # Ended without the phase showing between two polls. Waiting on to the
            # deadline cost each missed try a minute (279 s for the prune cut in a
            # run of 2026-12-05); the next try starts at once.
            break
        time.sleep(0.001)
    if frozen_at is None:
        missed = ('the phase ended between two polls' if seen
                  else 'the round ended with no sight of the phase (nothing to prune, or between two polls)' if started
                  else 'the round did not start within 60 s')
        print(json.dumps({'phase': phase, 'missed': missed}))
        return 3
    # The freeze lands when the round next returns from the kernel, which on a
    # busy TCG guest can be vDisks later (seen: asked while one was suspended,
    # landed in the round's last commit). So check where it landed: the
    # catalog a cut would leave must still show the phase's rows, or the cut
    # tests nothing.
    time.sleep(0.2)
    catalog = states_after_cut(CATALOG)
    report = {'phase': phase, 'asked_at': frozen_at, 'catalog': catalog,
              'suspended': [v for n, v in names.items() if dm.exists(n) and dm.info(n)['suspended']]}
    if not catalog.get(wanted):
        freeze(False)  # let this round finish; the caller runs another
        report['missed'] = 'the freeze landed after the phase'
        print(json.dumps(report))
        return 3
    print(json.dumps(report), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
