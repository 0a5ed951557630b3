# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The snapshot schedule: its configuration, retention, the free-space guard and one round.

A round (the storage host's timer runs one every interval) snapshots every
vDisk of the pool in this one process (a vDisk that no write reached since its
last snapshot gets an entry sharing that snapshot: no suspend, no pool
commit), prunes what retention no longer keeps,
and writes the status file that the storage API's /metrics and the check
command read. One vDisk failing does not stop the others; it is reported.

Retention counts are time windows, in UTC: ``minutely: 60`` keeps the first
snapshot of each of the last 60 minutes, ``hourly: 24`` the first of each of
the last 24 hours, and so on for daily, weekly (ISO weeks) and monthly. A
snapshot stays while any class keeps it. Only scheduled snapshots are pruned;
manual ones and the ones a rollback keeps are the user's.

Standard library only: the storage host runs this file as it is.
"""

from __future__ import annotations

import json
import os
import time

try:
    from ansible_collections.clusterducks.vdisk.plugins.module_utils import atomic, pool_layout, rules
except ImportError:  # the storage host's snapshot round, installed beside its siblings
    from . import atomic, pool_layout, rules  # type: ignore[no-redef]

CLASSES = ('minutely', 'hourly', 'daily', 'weekly', 'monthly')
# The intervals a systemd calendar event can repeat evenly within an hour.
INTERVALS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)
DEFAULT_RETENTION = {'minutely': 60, 'hourly': 24, 'daily': 7, 'weekly': 4, 'monthly': 0}
DEFAULT_RESERVE_PERCENT = 20
# vDisks a round snapshots (and snapshots it prunes) at once. 4: in the TCG lab a
# round over 501 changed vDisks took 9.8-13.5 s against 14.4-31.5 s in one thread
# (8 workers: 8.6-11.6 s, little better; the device-mapper calls alone: 3.1 s
# against 5.7-7.6 s); each vDisk's pause grows with the workers queued on the
# pool's messages. Since the prune comes before the suspends: 6.2-7.2 s against 6.8-7.6 s in one thread.
DEFAULT_ROUND_WORKERS = 4
MAX_ROUND_WORKERS = 32
STATUS_FILE = 'snapshot-status.json'
AUTO_PREFIX = 'auto-'


class ConfigError(ValueError):
    pass


def _count(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100000:
        raise ConfigError('%s must be a whole number from 0 to 100000, got %r' % (what, value))
    return value


def check_retention(retention, what='retention', base=None):
    """A retention mapping -> all five classes (missing ones from ``base``); refuses one that keeps nothing."""
    if not isinstance(retention, dict):
        raise ConfigError('%s must be a mapping of %s to counts, got %r' % (what, ', '.join(CLASSES), retention))
    unknown = sorted(set(retention) - set(CLASSES))
    if unknown:
        raise ConfigError('%s: unknown class %s (the classes are %s)' % (what, ', '.join(unknown), ', '.join(CLASSES)))
    result = dict((c, _count(retention.get(c, (base or {}).get(c, 0)), '%s.%s' % (what, c))) for c in CLASSES)
    if not any(result.values()):
        raise ConfigError('%s keeps nothing: every class is 0 (set enabled: false to take no snapshots)' % what)
    return result


def check_config(config):
    """Validate a schedule configuration; return it complete. Every rule lives here (role, CLI, tests)."""
    if not isinstance(config, dict):
        raise ConfigError('the configuration must be a JSON object')
    unknown = sorted(set(config) - {'pool', 'interval_minutes', 'retention', 'reserve_percent', 'share_unchanged',
                                    'round_workers', 'vdisks'})
    if unknown:
        raise ConfigError('unknown setting %s' % ', '.join(unknown))
    pool = config.get('pool')
    if not isinstance(pool, str) or not pool.startswith(pool_layout.LVM_THIN):
        raise ConfigError('pool must be an LVM thin pool, lvm-thin:VG/POOL (snapshots need one), got %r' % (pool,))
    interval = config.get('interval_minutes', 1)
    if isinstance(interval, bool) or not isinstance(interval, int) or interval not in INTERVALS:
        raise ConfigError('interval_minutes must be a whole number of minutes that divides an hour (%s), got %r'
                          % (', '.join(str(i) for i in INTERVALS), interval))
    reserve = config.get('reserve_percent', DEFAULT_RESERVE_PERCENT)
    if isinstance(reserve, bool) or not isinstance(reserve, int) or not 5 <= reserve <= 90:
        raise ConfigError('reserve_percent must be a whole number from 5 to 90, got %r' % (reserve,))
    retention = check_retention(config.get('retention', DEFAULT_RETENTION))
    share = config.get('share_unchanged', True)
    if not isinstance(share, bool):
        raise ConfigError('share_unchanged must be true or false, got %r' % (share,))
    workers = config.get('round_workers', DEFAULT_ROUND_WORKERS)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_ROUND_WORKERS:
        raise ConfigError('round_workers must be a whole number from 1 to %d, got %r' % (MAX_ROUND_WORKERS, workers))
    vdisks = {}
    for name, settings in sorted((config.get('vdisks') or {}).items()):
        try:
            rules.check_vdisk(name)
        except rules.RuleError as exc:
            raise ConfigError('vdisks: %s' % exc)
        if not isinstance(settings, dict) or set(settings) - {'enabled', 'retention'}:
            raise ConfigError('vdisks.%s takes enabled and retention, got %r' % (name, settings))
        enabled = settings.get('enabled', True)
        if not isinstance(enabled, bool):
            raise ConfigError('vdisks.%s.enabled must be true or false, got %r' % (name, enabled))
        vdisks[name] = {'enabled': enabled,
                        'retention': check_retention(settings.get('retention', {}), 'vdisks.%s.retention' % name,
                                                     base=retention) if enabled else retention}
    return {'pool': pool, 'interval_minutes': interval, 'retention': retention, 'reserve_percent': reserve,
            'share_unchanged': share, 'round_workers': workers, 'vdisks': vdisks}


def load_config(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError('cannot read %s: %s' % (path, exc))
    return check_config(data)


def _bucket(cls, timestamp):
    if cls == 'minutely':
        return int(timestamp // 60)
    if cls == 'hourly':
        return int(timestamp // 3600)
    day = int(timestamp // 86400)
    if cls == 'daily':
        return day
    if cls == 'weekly':
        return (day + 3) // 7  # 1970-01-01 was a Thursday; ISO weeks start on Monday
    t = time.gmtime(timestamp)
    return t.tm_year * 12 + t.tm_mon - 1


def keep(created_times, retention, now):
    """The set of snapshot times ``retention`` keeps at ``now``: the first of each bucket in each class's window."""
    kept = set()
    for cls in CLASSES:
        count = retention.get(cls, 0)
        if not count:
            continue
        current = _bucket(cls, now)
        first = {}
        for created in sorted(created_times):
            bucket = _bucket(cls, created)
            if current - bucket < count and bucket not in first:
                first[bucket] = created
        kept.update(first.values())
    return kept


def auto_name(now):
    return AUTO_PREFIX + time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))


def retention_for(config, vdisk):
    settings = config['vdisks'].get(vdisk)
    return settings['retention'] if settings else config['retention']


def _over(usage, reserve):
    limit = 100 - reserve
    return usage['data_percent'] > limit or usage['metadata_percent'] > limit


def guard(snapshots, reserve_percent):
    """Keep ``reserve_percent`` of the pool's data and metadata free by deleting the oldest scheduled snapshots.

    Returns {'pruned': [...], 'usage': {...}, 'over': bool}: ``over`` still
    true means no scheduled snapshot is left to delete and the round must take
    none (manual snapshots are the user's: reported, never deleted here).
    """
    usage = before = snapshots.pool_usage()
    pruned = []
    if _over(usage, reserve_percent):
        # Oldest first over the whole pool: the ones retention would drop soonest.
        # Never one a rollback is being made from (a module run may hold it).
        busy = set(r['snapshot_id'] for r in snapshots.pending_rollbacks().values())
        candidates = sorted((s for s in snapshots.list(kinds=('scheduled',)) + snapshots.orphans()
                             if s.kind == 'scheduled' and s.state == 'ready' and s.thin_id not in busy),
                            key=lambda s: s.created)
        while candidates and _over(usage, reserve_percent):
            batch, candidates = candidates[:8], candidates[8:]
            done, _failures = snapshots.delete(batch)
            pruned += ['%s@%s' % (s.vdisk, s.name) for s in done]
            usage = snapshots.pool_usage()
    return {'pruned': pruned, 'usage': usage, 'before': before, 'over': _over(usage, reserve_percent)}


def run_round(config, snapshots, now=None):
    """One round: guard, prune by retention, snapshot every enabled vDisk. Returns the round's report.

    The prune comes before the snapshots' suspends (``round_snapshots`` calls
    it once the unchanged vDisks' entries are made, so none of the devices
    they share is deleted): each delete is a pool commit, and after the
    snapshots each would wait behind udev and systemd handling the resumed
    vDisks' change events on the same CPUs. Retention decides the same either
    way: a window is set by the round's time alone, and the new snapshot,
    the newest of its vDisk, is the first of no earlier entry's bucket. It is
    itself pruned after (from what the prune read) when its vDisk already had
    an entry in its minute (a second round in one minute).
    """
    now = time.time() if now is None else now
    started = time.time()
    errors = []
    _done, interrupted = snapshots.finish_interrupted()
    errors += ['cleaning up %s@%s: %s' % (k[0], k[1], v) for k, v in sorted(interrupted.items())]
    before = guard(snapshots, config['reserve_percent'])
    created, unchanged = {}, []
    volumes = snapshots.volumes()
    enabled = [v for v in sorted(volumes) if config['vdisks'].get(v, {}).get('enabled', True)]
    pruning = {'expired': 0, 'failed': 0, 'seconds': 0.0, 'kept': None}

    def prune(new=None):
        """Delete what retention no longer keeps; with ``new`` (this round's new snapshots), only those of them."""
        began = time.time()
        expired = []
        if new is None:
            # Per vDisk, and per earlier vDisk of a name: orphans age out the same way. Its cost grows with
            # every entry the pool keeps: plain rows, and Snapshots only for the expired.
            pruning['kept'] = {}
            for (vdisk, wwn), entries in sorted(snapshots.scheduled_entries().items()):
                kept = keep([t for t, _name in entries], retention_for(config, vdisk), now)
                pruning['kept'][(vdisk, wwn)] = kept
                expired += [(vdisk, name) for t, name in entries if t not in kept]
        for snap in new or ():
            kept = pruning['kept'].get((snap.vdisk, snap.wwn), set())
            if snap.created not in keep(list(kept) + [snap.created], retention_for(config, snap.vdisk), now):
                expired.append((snap.vdisk, snap.name))
        expired = snapshots.get_many(expired)
        _deleted, failures = snapshots.delete(expired)
        errors.extend('pruning %s@%s: %s' % (k[0], k[1], v) for k, v in sorted(failures.items()))
        pruning['expired'] += len(expired)
        pruning['failed'] += len(failures)
        pruning['seconds'] += time.time() - began

    if before['over']:
        errors.append('pool %s is over its reserve (%s%% kept free) with no scheduled snapshot left to delete: '
                      'no snapshot taken' % (config['pool'], config['reserve_percent']))
    else:
        created, failures, unchanged = snapshots.round_snapshots(enabled, auto_name(now), config['share_unchanged'],
                                                                 before_snapshots=prune)
        errors += ['snapshot of %s: %s' % (v, e) for v, e in sorted(failures.items())]
    snapshotted, pruned_before = time.time(), pruning['seconds']
    if pruning['kept'] is None:  # nothing was snapshotted: the prune was not called
        prune()
    else:
        prune(new=[created[v] for v in sorted(created) if v not in unchanged])
    after = snapshots.pool_usage()
    return {
        'started': now, 'duration_seconds': round(time.time() - started, 3),
        'snapshot_seconds': round(snapshotted - started - pruned_before, 3),
        'prune_seconds': round(pruning['seconds'], 3),
        'result': 'failed' if errors else 'ok', 'errors': errors,
        'vdisks': len(enabled), 'created': len(created), 'unchanged': len(unchanged),
        'pruned': pruning['expired'] - pruning['failed'],
        'guard_pruned': before['pruned'], 'guard': before, 'pool_usage': after,
    }


def guard_lines(result, config):
    """What a guard did, as log lines: one format for the guard's own timer and
    a round's guard (whichever saw the pool over its line first acted)."""
    lines = []
    if result['pruned']:
        lines.append('guard: pool at %.1f%% data, %.1f%% metadata, over its reserve line (%d%%): deleted %d oldest '
                     'scheduled snapshots, now %.1f%% / %.1f%%: %s' % (
                         result['before']['data_percent'], result['before']['metadata_percent'],
                         100 - config['reserve_percent'], len(result['pruned']), result['usage']['data_percent'],
                         result['usage']['metadata_percent'], ' '.join(result['pruned'])))
    if result['over']:
        lines.append('guard: pool %s still over its reserve (data %.1f%%, metadata %.1f%%) with no scheduled '
                     'snapshot left' % (config['pool'], result['usage']['data_percent'],
                                        result['usage']['metadata_percent']))
    return lines


def summarize(snapshots, now):
    """{vDisk: {'count', 'scheduled', 'newest'}} for the status file."""
    result = dict((v, {'count': 0, 'scheduled': 0, 'newest': None}) for v in snapshots.volumes())
    for vdisk, (count, scheduled, newest) in snapshots.counts().items():
        result[vdisk] = {'count': count, 'scheduled': scheduled, 'newest': newest}
    return result


def status_path(pool):
    return os.path.join(pool_layout.metadata_dir(pool), STATUS_FILE)


def read_status(pool):
    try:
        with open(status_path(pool)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_status(config, report, snapshots, now):
    """The status file: the last round, counters, and each vDisk's newest snapshot (read by /metrics and check)."""
    previous = read_status(config['pool']) or {}
    failed = report['result'] != 'ok'
    status = {
        'format_version': 1, 'pool': config['pool'], 'interval_minutes': config['interval_minutes'],
        'reserve_percent': config['reserve_percent'],
        # The guard's own result is for the round's log line; guard_pruned already names what it deleted.
        'last_round': dict((k, v) for k, v in report.items() if k != 'guard'),
        'rounds_total': previous.get('rounds_total', 0) + 1,
        'rounds_failed_total': previous.get('rounds_failed_total', 0) + (1 if failed else 0),
        'last_success': previous.get('last_success') if failed else report['started'],
        'vdisks': summarize(snapshots, now),
    }
    # No secret in it. Compact: the indented form takes Python's own encoder, not the C one
    # (0.15 s more per round over 500 vDisks under TCG); jq shows it indented.
    atomic.write_json_atomic(status_path(config['pool']), status, mode=0o644, indent=None)
    return status


def check(status, now, warn_age=None, crit_age=None, warn_free=None, crit_free=None):
    """Nagios-style verdict on a status file: (exit code, one line). 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    if not status:
        return 3, 'SNAPSHOTS UNKNOWN - no status file: has a round run yet?'
    interval = status.get('interval_minutes', 1) * 60
    warn_age = warn_age or 3 * interval + 30
    crit_age = crit_age or 10 * interval + 30
    reserve = status.get('reserve_percent', DEFAULT_RESERVE_PERCENT)
    warn_free = reserve + 5 if warn_free is None else warn_free
    crit_free = reserve if crit_free is None else crit_free
    problems = {1: [], 2: []}
    vdisks = status.get('vdisks') or {}
    oldest_newest = 0
    for name, entry in sorted(vdisks.items()):
        if entry.get('newest') is None:
            problems[2].append('%s has no scheduled snapshot' % name)
            continue
        age = now - entry['newest']
        oldest_newest = max(oldest_newest, age)
        if age > crit_age:
            problems[2].append('%s newest snapshot %d s old' % (name, age))
        elif age > warn_age:
            problems[1].append('%s newest snapshot %d s old' % (name, age))
    last = status.get('last_round') or {}
    if last.get('result') != 'ok':
        problems[1].append('last round failed: %s' % '; '.join(last.get('errors') or ['?'])[:300])
    usage = last.get('pool_usage') or {}
    free = 100 - max(usage.get('data_percent', 0), usage.get('metadata_percent', 0))
    if free < crit_free:
        problems[2].append('pool %.1f%% free' % free)
    elif free < warn_free:
        problems[1].append('pool %.1f%% free' % free)
    code = 2 if problems[2] else 1 if problems[1] else 0
    word = ('OK', 'WARNING', 'CRITICAL')[code]
    text = '; '.join(problems[2] + problems[1]) or '%d vDisks, newest snapshots at most %d s old' % (
        len(vdisks), oldest_newest)
    perf = 'vdisks=%d max_newest_age=%ds;%d;%d pool_free=%.1f%%;%d;%d rounds_failed=%d' % (
        len(vdisks), oldest_newest, warn_age, crit_age, free, warn_free, crit_free,
        status.get('rounds_failed_total', 0))
    return code, 'SNAPSHOTS %s - %s | %s' % (word, text, perf)


def prometheus(status, now):
    """The status file as Prometheus text lines (the storage API's /metrics serves them)."""
    if not status:
        return []
    last = status.get('last_round') or {}
    usage = last.get('pool_usage') or {}
    pool = status.get('pool', '')
    out = []

    def metric(name, kind, help_text, samples):
        out.extend(['# HELP %s %s' % (name, help_text), '# TYPE %s %s' % (name, kind)])
        out.extend('%s%s %s' % (name, labels, value) for labels, value in samples)

    vdisks = sorted((status.get('vdisks') or {}).items())
    metric('vdisk_snapshot_newest_age_seconds', 'gauge', 'Age of the newest scheduled snapshot of each vDisk.',
           [('{vdisk="%s"}' % v, '%.0f' % (now - e['newest'])) for v, e in vdisks if e.get('newest')])
    metric('vdisk_snapshot_count', 'gauge', 'Snapshots each vDisk has (every kind).',
           [('{vdisk="%s"}' % v, e.get('count', 0)) for v, e in vdisks])
    metric('vdisk_snapshot_rounds_total', 'counter', 'Snapshot rounds run.', [('', status.get('rounds_total', 0))])
    metric('vdisk_snapshot_rounds_failed_total', 'counter', 'Snapshot rounds with an error (a vDisk, the guard, pruning).',
           [('', status.get('rounds_failed_total', 0))])
    metric('vdisk_snapshot_last_round_timestamp_seconds', 'gauge', 'When the last round started (unix seconds).',
           [('', '%.0f' % last.get('started', 0))])
    metric('vdisk_snapshot_last_round_duration_seconds', 'gauge', 'How long the last round took.',
           [('', last.get('duration_seconds', 0))])
    metric('vdisk_snapshot_last_round_success', 'gauge', '1 if the last round had no error.',
           [('', 1 if last.get('result') == 'ok' else 0)])
    metric('vdisk_snapshot_last_round_unchanged', 'gauge',
           'vDisks the last round found unwritten since their last snapshot (their entry shares it).',
           [('', last.get('unchanged', 0))])
    if usage:
        metric('vdisk_pool_data_free_percent', 'gauge', 'Free share of the thin pool\'s data, as of the last round.',
               [('{pool="%s"}' % pool, '%.2f' % (100 - usage['data_percent']))])
        metric('vdisk_pool_metadata_free_percent', 'gauge',
               'Free share of the thin pool\'s metadata, as of the last round.',
               [('{pool="%s"}' % pool, '%.2f' % (100 - usage['metadata_percent']))])
    return out
