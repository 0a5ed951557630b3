"""Freeze a snapshot round at a chosen point, so that the power can be cut there.

  round_cut.py snapshot|prune

Starts the round as its timer would (the clusterducks-vdisk-snapshot
service), watches the catalog and device-mapper, and freezes the unit's
cgroup (every process of the round, at once) at:

  snapshot  a vDisk suspended for its snapshot (its initiator's I/O waits),
            or, if no poll catches one, with the round's snapshots half made;
  prune     the round's deletes half done.

Prints what it froze (JSON) and exits 0, the round left frozen: the next step
cuts the power. Exits 3 if the round ended before it could be frozen (run it
again).
"""

import json
import os
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, '/usr/lib/clusterducks-vdisk')
from vdisk_snapshots import devmapper  # noqa: E402  (the storage host's own copy)

UNIT = 'clusterducks-vdisk-snapshot.service'
CGROUP = '/sys/fs/cgroup/system.slice/%s' % UNIT
META = '/var/lib/clusterducks-vdisk/lvm-thin/vdisks/pool'
CATALOG = META + '/snapshots.sqlite'


def states(db):
    return dict(db.execute('SELECT state, count(*) FROM snapshot GROUP BY state').fetchall())


def main(phase):
    vdisks = sorted(d for d in os.listdir(META) if os.path.exists(os.path.join(META, d, 'vdisk.json')))
    names = dict((devmapper.dm_name('vdisks', 'vdisk-' + v), v) for v in vdisks)
    dm = devmapper.DeviceMapper()
    db = sqlite3.connect('file:%s?mode=ro' % CATALOG, uri=True, timeout=5)
    subprocess.run(['systemctl', 'start', '--no-block', UNIT], check=True)
    wanted = 'creating' if phase == 'snapshot' else 'deleting'
    deadline, seen, frozen_at = time.time() + 60, None, None
    while time.time() < deadline and frozen_at is None:
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
                    frozen_at = 'vDisk %s suspended for its snapshot' % suspended[0]
                elif time.time() - seen > 0.08:
                    frozen_at = 'snapshots half made'
            if frozen_at:
                with open(CGROUP + '/cgroup.freeze', 'w') as f:
                    f.write('1')
        elif seen:
            break  # the phase is over: missed
        time.sleep(0.001)
    if frozen_at is None:
        print(json.dumps({'phase': phase, 'missed': True}))
        return 3
    time.sleep(0.2)  # the freeze completes; the catalog as the cut finds it
    try:
        catalog = states(db)
    except sqlite3.OperationalError as exc:
        catalog = 'locked by the frozen round (%s)' % exc
    report = {'phase': phase, 'frozen_at': frozen_at, 'catalog': catalog,
              'suspended': [v for n, v in names.items() if dm.exists(n) and dm.info(n)['suspended']]}
    print(json.dumps(report), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
