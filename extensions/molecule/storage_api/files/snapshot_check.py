"""The snapshot checks, run on the storage VM through the clusterducks-vdisk-snapshots command.

  snapshot_check.py watch VDISK OUT SINCE
      While the log is written: every few seconds, check each new scheduled
      snapshot of VDISK taken after SINCE (clone, mount, count the log's
      intact records, unmount, xfs_repair -n, drop the clone) and append the
      result to OUT (JSON lines). Each snapshot is checked within seconds of
      being taken, so the guard test may delete it afterwards. Ends after one
      more pass once OUT.stop exists.
  snapshot_check.py bounds OUT ACKS MARGIN MINUTES [VDISK]
      The watched snapshots against the acknowledgements: every one mounted
      clean and holds a gapless prefix of the log with every record
      acknowledged by T - MARGIN and none written after T + MARGIN (see
      below); they cover at least MINUTES consecutive minutes, one each.
      With VDISK: a minute whose snapshot the free-space guard deleted before
      the watcher reached it (the guard's journal names it) is no gap; such
      snapshots are listed apart, unchecked. Any other missing minute is.
  snapshot_check.py consistency VDISK ACKS SINCE MARGIN
      Every scheduled snapshot of VDISK taken after SINCE: clone it, mount the
      clone (XFS replays its log, as after a power-cut), count the intact
      records of /log from the start (fsync_log.py prefix), unmount, run
      xfs_repair -n, drop the clone. ACKS holds "seq time" per acknowledged
      record (the initiator's clock). The snapshot at time T is crash-consistent
      if its log is a gapless prefix holding every record acknowledged by
      T - MARGIN and none written after T + MARGIN (one more than acknowledged
      by then: a record on disk whose fsync had not returned yet).
  snapshot_check.py counts VDISK MINUTELY HOURLY [--every-minute]
      The scheduled snapshots of VDISK are exactly what retention keeps: the
      first one left of each of the last MINUTELY minutes and of each of the
      last HOURLY hours. --every-minute: and each of those minutes has one (no
      round was skipped).
  snapshot_check.py markers DM_NAME OUT
      Until OUT.stop exists: every 2 s, the write marker a round would read
      of device-mapper device DM_NAME (devmapper.write_marker: boot, disk
      sequence, writes and discards with their sectors, writes in flight;
      and the live table), appended to OUT with the time whenever it
      changes: what reached a vDisk between two rounds, for the
      unchanged-vDisk test.

Prints JSON; exits 1 if a check fails.
"""

import datetime
import json
import os
import re
import subprocess
import sys
import tempfile

SNAPSHOTS = '/usr/local/sbin/clusterducks-vdisk-snapshots'
FSYNC_LOG = '/root/fsync_log.py'


def sh(argv):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True).stdout


def scheduled(vdisk):
    rows = json.loads(sh([SNAPSHOTS, 'list', vdisk, '--json']))
    return [r for r in rows if r['kind'] == 'scheduled']


def epoch(created):
    import calendar
    import time
    return calendar.timegm(time.strptime(created, '%Y-%m-%dT%H:%M:%SZ'))


def acked_by(acks, when):
    return sum(1 for _seq, t in acks if t <= when)


def check_one(vdisk, snap):
    """Clone, mount, read and repair-check one snapshot of the log; drop the clone."""
    # 'created' is whole seconds; the snapshot was taken within that second.
    t = epoch(snap['created'])
    clone = 'check-' + snap['name'][len('auto-'):]
    device = sh([SNAPSHOTS, 'clone', vdisk, snap['name'], clone]).strip()
    mnt = tempfile.mkdtemp()
    entry = {'snapshot': snap['name'], 'created': t}
    try:
        mount = subprocess.run(['mount', '-o', 'nouuid', device, mnt], stderr=subprocess.PIPE,
                               universal_newlines=True, check=False)
        entry['mounted'] = mount.returncode == 0
        if entry['mounted']:
            try:
                entry.update(json.loads(sh(['python3', FSYNC_LOG, 'prefix', os.path.join(mnt, 'log')])))
            finally:
                sh(['umount', mnt])
        else:
            entry['mount_error'] = mount.stderr.strip()
        repair = subprocess.run(['xfs_repair', '-n', device], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True, check=False)
        entry['xfs_repair_clean'] = repair.returncode == 0
        if repair.returncode:
            entry['xfs_repair'] = repair.stdout[-500:]
    finally:
        os.rmdir(mnt)
        sh([SNAPSHOTS, 'drop-clone', vdisk, clone])
    return entry


def read_acks(acks_path):
    with open(acks_path) as f:
        # seq, wall time (what snapshot times compare with), and since 2026-12-05 a monotonic time
        return [(int(fields[0]), float(fields[1])) for fields in (line.split() for line in f if line.strip())]


def judge(entry, acks, margin):
    t = entry['created']
    low, high = acked_by(acks, t - margin), acked_by(acks, t + 1 + margin) + 1
    entry['bounds'] = [low, high]
    entry['consistent'] = bool(entry.get('mounted') and entry.get('xfs_repair_clean')
                               and low <= entry.get('records', -1) <= high)
    return entry['consistent']


def consistency(vdisk, acks_path, since, margin):
    acks = read_acks(acks_path)
    results, ok = [], True
    for snap in scheduled(vdisk):
        if epoch(snap['created']) < since:
            continue
        entry = check_one(vdisk, snap)
        ok = judge(entry, acks, margin) and ok
        results.append(entry)
    print(json.dumps({'snapshots': results, 'checked': len(results), 'ok': ok and bool(results)}))
    return 0 if ok and results else 1


def watch(vdisk, out, since):
    import time
    done, tries = set(), {}
    if os.path.exists(out):
        with open(out) as f:
            done = set(json.loads(line)['snapshot'] for line in f if line.strip())
    while True:
        last_pass = os.path.exists(out + '.stop')
        for snap in scheduled(vdisk):
            # A round lists its snapshots as 'creating' until every vDisk of the round is done: not yet.
            if snap['name'] in done or epoch(snap['created']) < since or snap['state'] != 'ready':
                continue
            try:
                entry = check_one(vdisk, snap)
            except subprocess.CalledProcessError as exc:
                # Tried again in the next passes; then (or deleted before it was checked) a gap, reported.
                tries[snap['name']] = tries.get(snap['name'], 0) + 1
                subprocess.run([SNAPSHOTS, 'drop-clone', vdisk, 'check-' + snap['name'][len('auto-'):]],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
                if tries[snap['name']] < 3 and not last_pass:
                    continue
                entry = {'snapshot': snap['name'], 'created': epoch(snap['created']),
                         'error': '%s: %s' % (exc, (exc.stderr or '').strip()[-300:])}
            with open(out, 'a') as f:
                f.write(json.dumps(entry) + '\n')
            done.add(snap['name'])
        if last_pass:
            return 0
        time.sleep(3)


GUARD_DELETED_RE = re.compile(r'guard: .* deleted \d+ oldest scheduled snapshots, now [^:]*: (.*)$')


def guard_deleted(vdisk, lines):
    """The names of VDISK's snapshots that the guard's journal lines say it deleted."""
    names = []
    for line in lines:
        m = GUARD_DELETED_RE.search(line)
        if m:
            names += [ref.split('@', 1)[1] for ref in m.group(1).split() if ref.startswith(vdisk + '@')]
    return names


def guard_journal():
    # The guard's timer or a round's guard, whichever found the pool over the line.
    return sh(['journalctl', '-q', '-o', 'cat', '-u', 'clusterducks-vdisk-snapshot-guard',
               '-u', 'clusterducks-vdisk-snapshot']).splitlines()


def name_minute(name):
    """auto-20261204T154004Z -> its minute since the epoch (UTC)."""
    stamp = datetime.datetime.strptime(name[len('auto-'):], '%Y%m%dT%H%M%SZ')
    return int(stamp.replace(tzinfo=datetime.timezone.utc).timestamp()) // 60


def bounds(out, acks_path, margin, minutes, vdisk=None, journal=guard_journal):
    acks = read_acks(acks_path)
    with open(out) as f:
        entries = sorted((json.loads(line) for line in f if line.strip()), key=lambda e: e['created'])
    verdicts = [judge(e, acks, margin) for e in entries]  # every entry gets its bounds
    ok = all(verdicts)
    checked = set(e['snapshot'] for e in entries)
    first = entries[0]['created'] // 60 if entries else None
    # Deleted by the guard before the watcher reached it: taken, so no gap in the schedule, but not checked.
    unchecked = sorted(set(n for n in guard_deleted(vdisk, journal()) if n not in checked
                           and first is not None and name_minute(n) >= first)) if vdisk else []
    minutes_checked = [e['created'] // 60 for e in entries]
    covered = sorted(set(minutes_checked) | set(name_minute(n) for n in unchecked))
    consecutive = bool(covered) and len(set(minutes_checked)) == len(minutes_checked) \
        and covered == list(range(covered[0], covered[-1] + 1))
    result = {'checked': len(entries), 'consecutive_minutes': consecutive, 'all_consistent': ok,
              'deleted_by_guard_unchecked': unchecked, 'snapshots': entries}
    result['ok'] = ok and consecutive and len(entries) >= minutes
    print(json.dumps(result))
    return 0 if result['ok'] else 1


def counts(vdisk, minutely, hourly, strict):
    """Retention's windows, computed here from the snapshots that exist: the first snapshot of each of the last
    MINUTELY minutes and of each of the last HOURLY hours (UTC), counted back from the newest one's."""
    snaps = sorted(scheduled(vdisk), key=lambda s: s['created'])
    times = [epoch(s['created']) for s in snaps]
    expected = set()
    for width, count in ((60, minutely), (3600, hourly)):
        newest = times[-1] // width
        firsts = {}
        for t in times:
            if newest - t // width < count:
                firsts.setdefault(t // width, t)
        expected.update(firsts.values())
    minutes = sorted(set(t // 60 for t in times if times[-1] // 60 - t // 60 < minutely))
    result = {
        'scheduled': len(times), 'expected': len(expected),
        # One round a minute: every one of the last MINUTELY minutes has its snapshot.
        'every_minute': minutes == list(range(times[-1] // 60 - minutely + 1, times[-1] // 60 + 1)),
        'exact': set(times) == expected,
        'names': [s['name'] for s in snaps],
    }
    result['ok'] = result['exact'] and (result['every_minute'] or not strict)
    print(json.dumps(result))
    return 0 if result['ok'] else 1


def markers(dm_name, out):
    sys.path.insert(0, '/usr/lib/clusterducks-vdisk')
    import time
    from vdisk_snapshots import devmapper
    last = None
    while not os.path.exists(out + '.stop'):
        dm = devmapper.DeviceMapper()
        info = dm.info(dm_name)
        now = None
        if info['exists']:
            now = (devmapper.write_marker(info['major'], info['minor'], '/dev/mapper/' + dm_name), dm.table(dm_name))
        if now != last:
            with open(out, 'a') as f:
                f.write('%s %s\n' % (time.strftime('%H:%M:%S'), now))
            last = now
        time.sleep(2)
    return 0


def main(argv):
    if len(argv) == 4 and argv[0] == 'watch':
        return watch(argv[1], argv[2], float(argv[3]))
    if len(argv) in (5, 6) and argv[0] == 'bounds':
        return bounds(argv[1], argv[2], float(argv[3]), int(argv[4]), *argv[5:6])
    if len(argv) == 5 and argv[0] == 'consistency':
        return consistency(argv[1], argv[2], float(argv[3]), float(argv[4]))
    if len(argv) in (4, 5) and argv[0] == 'counts':
        return counts(argv[1], int(argv[2]), int(argv[3]), argv[4:] == ['--every-minute'])
    if len(argv) == 3 and argv[0] == 'markers':
        return markers(argv[1], argv[2])
    sys.stderr.write(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
