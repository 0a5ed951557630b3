# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""clusterducks-vdisk-snapshots: round | guard | check | list | clone | drop-clone | audit | validate-config."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from vdisk_snapshots import locking, snapshot_schedule, thin_snapshots

DEFAULT_CONFIG = '/etc/clusterducks-vdisk/snapshots.json'
# The modules' lock (plugins/module_utils/locking.py): a round never snapshots a
# vDisk a module run is creating, moving or deleting.
HOST_LOCK = locking.LOCK_PATH
# A round that still runs when the next is due makes the next one skip: rounds never pile up.
ROUND_LOCK = '/run/lock/clusterducks-vdisk-snapshots.lock'


def run(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def log(message):
    print(message, flush=True)  # the journal keeps it (the unit's stdout)


def _round(config):
    snapshots = thin_snapshots.ThinSnapshots(config['pool'], run, workers=config['round_workers'])
    now = time.time()
    try:
        report = snapshot_schedule.run_round(config, snapshots, now)
    except (thin_snapshots.SnapshotError, OSError) as exc:
        report = {'started': now, 'duration_seconds': round(time.time() - now, 3), 'result': 'failed',
                  'errors': [str(exc)], 'vdisks': 0, 'created': 0, 'unchanged': 0, 'pruned': 0, 'guard_pruned': [],
                  'pool_usage': {}}
    snapshot_schedule.write_status(config, report, snapshots, now)
    return report


def cmd_round(args, config):
    try:
        with locking.host_lock(ROUND_LOCK, timeout=0):
            # Module runs hold the host lock for seconds; a round waits a little, then skips.
            with locking.host_lock(HOST_LOCK, timeout=args.lock_wait):
                report = _round(config)
    except locking.LockTimeout as exc:
        log('round skipped: %s' % exc)
        return 0
    for line in snapshot_schedule.guard_lines(report['guard'], config) if 'guard' in report else ():
        log(line)
    usage = report['pool_usage']
    log('round %s: %d vDisks, %d snapshots taken (%d unchanged, sharing their last), %d pruned, %d pruned by the '
        'guard, %.2f s (snapshots %.2f s), pool data %.1f%% metadata %.1f%%' % (
            report['result'], report['vdisks'], report['created'], report.get('unchanged', 0), report['pruned'],
            len(report['guard_pruned']),
            report['duration_seconds'], report.get('snapshot_seconds', 0), usage.get('data_percent', -1),
            usage.get('metadata_percent', -1)))
    for error in report['errors']:
        log('error: %s' % error)
    return 1 if report['result'] != 'ok' else 0


def cmd_guard(args, config):
    # No host lock: the guard must act while a long module run holds it.
    try:
        with locking.host_lock(ROUND_LOCK + '.guard', timeout=0):
            snapshots = thin_snapshots.ThinSnapshots(config['pool'], run, workers=config['round_workers'])
            result = snapshot_schedule.guard(snapshots, config['reserve_percent'])
    except locking.LockTimeout:
        return 0  # the previous guard still runs
    for line in snapshot_schedule.guard_lines(result, config):
        log(line)
    return 1 if result['over'] else 0


def cmd_check(args, config):
    pool = config['pool'] if config else args.pool
    code, line = snapshot_schedule.check(snapshot_schedule.read_status(pool), time.time(), args.warn_age,
                                         args.crit_age, args.warn_free, args.crit_free)
    print(line)
    return code


def cmd_list(args, config):
    snapshots = thin_snapshots.ThinSnapshots(config['pool'], run)
    now = time.time()
    rows = [s.to_dict(now) for s in snapshots.list(args.vdisk)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print('%-24s %-28s %-12s %8d s' % (r['vdisk'], r['name'], r['kind'], r['age_seconds']))
    return 0


def cmd_clone(args, config):
    snapshots = thin_snapshots.ThinSnapshots(config['pool'], run)
    print(snapshots.clone(args.vdisk, args.snapshot, args.clone))
    return 0


def cmd_drop_clone(args, config):
    thin_snapshots.ThinSnapshots(config['pool'], run).drop_clone(args.vdisk, args.clone)
    return 0


def cmd_audit(args, config):
    result = thin_snapshots.ThinSnapshots(config['pool'], run).audit()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, items in sorted(result.items()):
            print('%s: %s' % (key, ' '.join(str(i) for i in items) if items else 'none'))
    return 1 if any(result.values()) else 0


def _terminate(signum, frame):
    # systemd stops a stalled round with SIGTERM: unwind, so that a vDisk
    # suspended for its snapshot is resumed on the way out.
    raise SystemExit(128 + signum)


def main(argv=None):
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(prog='clusterducks-vdisk-snapshots', description=__doc__)
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('round', help='snapshot every vDisk, prune by retention, write the status file')
    p.add_argument('--lock-wait', type=int, default=20)
    sub.add_parser('guard', help='delete the oldest scheduled snapshots while the pool is over its reserve')
    p = sub.add_parser('check', help='Nagios-style check of the status file (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)')
    p.add_argument('--pool', help='when there is no configuration file')
    p.add_argument('--warn-age', type=int, help='seconds (default: 3 intervals + 30)')
    p.add_argument('--crit-age', type=int, help='seconds (default: 10 intervals + 30)')
    p.add_argument('--warn-free', type=float, help='percent (default: the reserve + 5)')
    p.add_argument('--crit-free', type=float, help='percent (default: the reserve)')
    p = sub.add_parser('list', help="a pool's snapshots")
    p.add_argument('vdisk', nargs='?')
    p.add_argument('--json', action='store_true')
    p = sub.add_parser('clone', help="a writable device with a snapshot's content (to look inside it)")
    p.add_argument('vdisk')
    p.add_argument('snapshot')
    p.add_argument('clone')
    p = sub.add_parser('drop-clone')
    p.add_argument('vdisk')
    p.add_argument('clone')
    p = sub.add_parser('audit', help='the catalog against the pool (after a crash): exit 1 on anything unfinished, '
                                     'missing, leaked or left suspended')
    p.add_argument('--json', action='store_true')
    p = sub.add_parser('validate-config', help='check a configuration file; change nothing')
    p.add_argument('file')
    args = parser.parse_args(argv)
    try:
        if args.command == 'validate-config':
            snapshot_schedule.load_config(args.file)
            return 0
        if args.command == 'check' and args.pool and not os.path.exists(args.config):
            config = None
        else:
            config = snapshot_schedule.load_config(args.config)
        return {'round': cmd_round, 'guard': cmd_guard, 'check': cmd_check, 'list': cmd_list,
                'clone': cmd_clone, 'drop-clone': cmd_drop_clone, 'audit': cmd_audit}[args.command](args, config)
    except snapshot_schedule.ConfigError as exc:
        print('clusterducks-vdisk-snapshots: configuration: %s' % exc, file=sys.stderr)
        return 3 if args.command == 'check' else 2
    except thin_snapshots.SnapshotError as exc:
        print('clusterducks-vdisk-snapshots: %s' % exc, file=sys.stderr)
        return 3 if args.command == 'check' else 1
