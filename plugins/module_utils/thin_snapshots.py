# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Snapshots of the vDisks of an LVM thin pool, kept by dm-thin itself.

Why not ``lvcreate --snapshot``: in the lab one LVM thin snapshot took
0.42-0.73 s, because LVM rewrites (and archives) the volume group's whole
metadata text on every change, and that text would have to list every
snapshot: 500 vDisks keeping 50 snapshots each are 25,000 logical volumes.
dm-thin keeps snapshots in its own B-trees. A snapshot here is the message
``create_snap NEW ORIGIN`` to the pool with the origin suspended (the kernel
interface LVM itself uses underneath, see the kernel's
admin-guide/device-mapper/thin-provisioning.rst), 14 ms per vDisk in the lab.

So snapshots are thin devices of the pool that LVM does not list:

- their ids start at 2**23 (``FIRST_ID``); LVM numbers its volumes from 1,
  one above the highest it knows;
- the catalog (vDisk, name, time, the vDisk's WWN, size) is an SQLite file
  beside the vDisks' metadata;
- every change is written to the catalog before the pool is told, so a run
  that died half-way is finished or undone by the next;
- their blocks count in the pool's data use (``lvs`` shows it), and
  thin_check / thin_repair keep them like any thin device.

Each snapshot is crash-consistent for its vDisk: the origin is suspended (its
in-flight writes complete) while the pool records the snapshot. There is no
consistency group across vDisks.

Standard library only: the storage host's snapshot round runs this file as it is.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

try:
    from ansible_collections.clusterducks.vdisk.plugins.module_utils import devmapper, pool_layout, rules
except ImportError:  # the storage host's snapshot round, installed beside its siblings
    from . import devmapper, pool_layout, rules  # type: ignore[no-redef]

FIRST_ID = 1 << 23
LAST_ID = (1 << 24) - 1  # dm-thin device ids are 24 bits
CATALOG = 'snapshots.sqlite'
# Rows named per query: SQLite takes 32,766 variables per statement (3.32+); 999 before.
QUERY_CHUNK = 400
KINDS = ('scheduled', 'manual', 'pre-rollback', 'clone')
CLONE_PREFIX = 'clusterducks-clone-'
SNAPSHOT_TABLE = """
CREATE TABLE IF NOT EXISTS %s (
    vdisk TEXT NOT NULL,
    name TEXT NOT NULL,
    thin_id INTEGER NOT NULL,
    wwn TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created REAL NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    parent TEXT,
    PRIMARY KEY (vdisk, name)
);
"""
# Entries of one vDisk may share a thin device: a round gives a vDisk that no
# write reached since its last snapshot an entry naming that snapshot's device.
# write_marker: what the kernel had counted of the vDisk's writes when the
# snapshot thin_id was taken (devmapper.write_marker).
SCHEMA = SNAPSHOT_TABLE % 'snapshot' + """
CREATE INDEX IF NOT EXISTS snapshot_thin_id ON snapshot (thin_id);
CREATE TABLE IF NOT EXISTS write_marker (
    vdisk TEXT PRIMARY KEY,
    wwn TEXT NOT NULL,
    marker TEXT NOT NULL,
    thin_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rollback (
    vdisk TEXT PRIMARY KEY,
    origin_id INTEGER NOT NULL,
    snapshot_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rollback_temp (
    vdisk TEXT NOT NULL,
    thin_id INTEGER NOT NULL UNIQUE
);
"""


class SnapshotError(Exception):
    """A snapshot operation cannot be done; the message is user-facing."""


def utc(timestamp):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(timestamp))


class Snapshot(object):
    __slots__ = ('vdisk', 'name', 'thin_id', 'wwn', 'size_bytes', 'created', 'kind', 'state', 'parent')
    FIELDS = __slots__

    def __init__(self, row):
        for field in self.__slots__:
            setattr(self, field, row[field])

    def to_dict(self, now):
        return {'vdisk': self.vdisk, 'name': self.name, 'kind': self.kind, 'created': utc(self.created),
                'age_seconds': int(max(0, now - self.created)), 'size_bytes': self.size_bytes,
                'thin_id': self.thin_id, 'wwn': self.wwn, 'state': self.state, 'parent': self.parent}


class ThinSnapshots(object):
    """The snapshots of one LVM thin pool (``lvm-thin:VG/POOL``).

    ``run(argv) -> (rc, out, err)`` runs the few LVM commands (one ``lvs`` per
    instance); device-mapper calls go through ``dm`` (libdevmapper).
    """

    def __init__(self, spec, run, dm=None, catalog=None, clock=time.time, read_only=False,
                 write_marker=devmapper.write_marker, workers=1):
        if not isinstance(spec, str) or not spec.startswith(pool_layout.LVM_THIN):
            raise SnapshotError('snapshots need an LVM thin pool (lvm-thin:VG/POOL), not %r: move the vDisks '
                                'with the vdisk module\'s migrate_from first' % (spec,))
        self.spec = spec
        self.vg, _sep, self.thin_pool = spec[len(pool_layout.LVM_THIN):].partition('/')
        self.run = run
        self._dm = dm
        self.clock = clock
        self.metadata_dir = pool_layout.metadata_dir(spec)
        path = catalog or os.path.join(self.metadata_dir, CATALOG)
        if read_only:
            # Readers change nothing, not even by making an empty catalog.
            uri = 'file:%s?mode=ro' % path if os.path.exists(path) else 'file::memory:'
            self.db = sqlite3.connect(uri, timeout=30, isolation_level=None, uri=True)
            if not os.path.exists(path):
                self.db.executescript(SCHEMA)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            # EXTRA, not FULL: a rollback-journal commit is the journal's unlink, and
            # only EXTRA syncs the directory after it. Under FULL a power-cut seconds
            # after a commit brought the journal back and undid the commit: rows for
            # snapshots the pool had made were gone (seen in the lab's power-cut test).
            self.db.execute('PRAGMA synchronous=EXTRA')
            self._migrate()
            self.db.executescript(SCHEMA)
        self.db.row_factory = sqlite3.Row
        self.write_marker = write_marker
        self.workers = workers
        self._volumes = None
        self.pool_device = devmapper.dm_name(self.vg, self.thin_pool) + '-tpool'

    def _migrate(self):
        """Catalogs before entries could share a thin device had thin_id UNIQUE: rebuild the table without it."""
        row = self.db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'snapshot'").fetchone()
        if row is None or 'UNIQUE' not in row[0]:
            return
        with self.db:
            self.db.execute('BEGIN IMMEDIATE')
            self.db.execute(SNAPSHOT_TABLE % 'snapshot_new')
            self.db.execute('INSERT INTO snapshot_new SELECT %s FROM snapshot' % ', '.join(Snapshot.FIELDS))
            self.db.execute('DROP TABLE snapshot')
            self.db.execute('ALTER TABLE snapshot_new RENAME TO snapshot')

    @property
    def dm(self):
        if self._dm is None:  # loaded when first needed: listing needs no libdevmapper
            self._dm = devmapper.DeviceMapper()
        return self._dm

    def close(self):
        self.db.close()

    # --- what is there -------------------------------------------------

    def volumes(self):
        """{vDisk name: {'thin_id', 'size_bytes', 'active', 'dm_name', 'wwn'}} of the pool, read once."""
        if self._volumes is None:
            rc, out, err = self.run(['lvs', '--reportformat', 'json', '--units', 'b', '--nosuffix', '--options',
                                     'lv_name,lv_size,thin_id,lv_attr,pool_lv', self.vg])
            if rc != 0:
                raise SnapshotError('cannot list the volumes of %s: %s' % (self.vg, (err or out).strip()))
            try:
                report = json.loads(out)['report'][0]['lv']
            except (ValueError, KeyError, IndexError) as exc:
                raise SnapshotError('cannot read the output of lvs %s: %s' % (self.vg, exc))
            volumes = {}
            lvs = dict((v['lv_name'], v) for v in report if v.get('pool_lv') == self.thin_pool)
            for name in pool_layout.names(self.metadata_dir, rules.VDISK_RE.fullmatch):
                lv = lvs.get('vdisk-' + name)
                if lv is None or not lv.get('thin_id'):
                    continue
                try:
                    with open(pool_layout.metadata_path(self.metadata_dir, name)) as f:
                        wwn = json.load(f).get('wwn')
                except (OSError, ValueError):
                    continue
                volumes[name] = {'thin_id': int(lv['thin_id']), 'size_bytes': int(lv['lv_size']),
                                 'active': lv['lv_attr'][4:5] == 'a', 'wwn': wwn,
                                 'dm_name': devmapper.dm_name(self.vg, lv['lv_name'])}
            self._volumes = volumes
        return self._volumes

    def forget(self):
        self._volumes = None

    def list(self, vdisk=None, kinds=None):
        """Snapshots (oldest first) of ``vdisk``, or of every vDisk, of the current vDisk of that name only."""
        query, args = 'SELECT * FROM snapshot', []
        if vdisk is not None:
            query, args = query + ' WHERE vdisk = ?', [vdisk]
        rows = [Snapshot(r) for r in self.db.execute(query + ' ORDER BY created, name', args)]
        volumes = self.volumes()
        # A vDisk deleted and made again under its name is another disk: its
        # predecessor's snapshots are not its own (the WWN tells them apart).
        return [s for s in rows if s.vdisk in volumes and s.wwn == volumes[s.vdisk]['wwn']
                and (kinds is None or s.kind in kinds)]

    def orphans(self):
        """Snapshots whose vDisk is gone or is another disk now (a new WWN)."""
        volumes = self.volumes()
        return [Snapshot(r) for r in self.db.execute('SELECT * FROM snapshot ORDER BY created')
                if r['vdisk'] not in volumes or r['wwn'] != volumes[r['vdisk']]['wwn']]

    def scheduled_entries(self):
        """{(vdisk, wwn): [(created, name), ...]} of every scheduled entry, orphans' too: what retention decides on.

        Plain rows, not Snapshots: a pool that keeps 100 snapshots of each of
        500 vDisks has 50,000 entries, and every round reads them all.
        """
        groups = {}
        cursor = self.db.cursor()
        cursor.row_factory = None
        for vdisk, wwn, name, created in cursor.execute(
                "SELECT vdisk, wwn, name, created FROM snapshot WHERE kind = 'scheduled' ORDER BY created, name"):
            groups.setdefault((vdisk, wwn), []).append((created, name))
        return groups

    def counts(self):
        """{vdisk: (entries, scheduled entries, newest scheduled created or None)} of the current vDisks, in SQL."""
        volumes = self.volumes()
        cursor = self.db.cursor()
        cursor.row_factory = None
        return dict((vdisk, (count, scheduled, newest)) for vdisk, wwn, count, scheduled, newest in cursor.execute(
            "SELECT vdisk, wwn, COUNT(*), SUM(kind = 'scheduled'), MAX(CASE WHEN kind = 'scheduled' THEN created END) "
            "FROM snapshot GROUP BY vdisk, wwn") if vdisk in volumes and wwn == volumes[vdisk]['wwn'])

    def get(self, vdisk, name):
        row = self.db.execute('SELECT * FROM snapshot WHERE vdisk = ? AND name = ?', (vdisk, name)).fetchone()
        return Snapshot(row) if row is not None else None

    def get_many(self, keys):
        """[Snapshot] of the entries ``keys`` ((vdisk, name) pairs) names, in their order; missing ones left out.

        A few queries, not one per entry: a round prunes one entry per vDisk
        (500 single lookups: 0.43 s in a profile of a round under TCG).
        """
        keys = list(keys)
        found = {}
        for start in range(0, len(keys), QUERY_CHUNK):
            chunk = keys[start:start + QUERY_CHUNK]
            query = 'SELECT * FROM snapshot WHERE (vdisk, name) IN (VALUES %s)' % ', '.join(['(?, ?)'] * len(chunk))
            for row in self.db.execute(query, [v for key in chunk for v in key]):
                found[(row['vdisk'], row['name'])] = Snapshot(row)
        return [found[key] for key in keys if key in found]

    def pending_rollbacks(self):
        return dict((r['vdisk'], r) for r in self.db.execute('SELECT * FROM rollback'))

    def pool_usage(self):
        """{'data_percent', 'metadata_percent', 'data_bytes_free'...} from the thin pool's status line."""
        self._activate_pool()
        _target, status, length = self.dm.status(self.pool_device)
        fields = status.split()
        meta_used, meta_total = (int(x) for x in fields[1].split('/'))
        data_used, data_total = (int(x) for x in fields[2].split('/'))
        _ttype, table, _len = self.dm.table(self.pool_device)
        block_bytes = int(table.split()[2]) * 512
        return {'data_percent': 100.0 * data_used / data_total, 'metadata_percent': 100.0 * meta_used / meta_total,
                'data_bytes': data_total * block_bytes, 'data_bytes_used': data_used * block_bytes,
                'mode': fields[4] if len(fields) > 4 else 'unknown', 'length_sectors': length}

    def _activate_pool(self):
        if not self.dm.exists(self.pool_device):
            # No thin volume is active yet (a host right after boot): LVM builds the -tpool layer.
            rc, out, err = self.run(['lvchange', '--activate', 'y', '%s/%s' % (self.vg, self.thin_pool)])
            if rc != 0 or not self.dm.exists(self.pool_device):
                raise SnapshotError('cannot activate thin pool %s/%s: %s'
                                    % (self.vg, self.thin_pool, (err or out).strip()))

    # --- changes -------------------------------------------------------

    def _free_ids(self, count, avoid=()):
        used = set(r[0] for r in self.db.execute('SELECT thin_id FROM snapshot UNION SELECT thin_id FROM rollback_temp'))
        used.update(avoid)
        if len(used) + count > LAST_ID - FIRST_ID + 1:
            raise SnapshotError('thin pool %s has no free snapshot id left' % self.spec)
        candidate = (max(used) if used else FIRST_ID - 1) + 1
        ids = []
        while len(ids) < count:
            if candidate > LAST_ID:
                candidate = FIRST_ID  # wrapped: fill the gaps older deletes left
            if candidate not in used:
                ids.append(candidate)
                used.add(candidate)
            candidate += 1
        return ids

    def _message(self, text, ok=()):
        try:
            self.dm.message(self.pool_device, text)
        except devmapper.DeviceMapperError as exc:
            if exc.errno not in ok:
                raise

    def create(self, vdisks, name, kind='manual', parent=None):
        """Snapshot each of ``vdisks`` as ``name``: ({vdisk: Snapshot}, {vdisk: error}).

        One vDisk failing does not stop the others. Each origin that is in use
        is suspended only for its own snapshot.
        """
        created, failures, _unchanged = self._create(vdisks, name, kind, parent, share_unchanged=False)
        return created, failures

    def round_snapshots(self, vdisks, name, share_unchanged=True, before_snapshots=None):
        """A round's scheduled snapshots: ({vdisk: Snapshot}, {vdisk: error}, [unchanged vDisks]).

        With ``share_unchanged``, a vDisk that no write reached since its last
        snapshot (``_unchanged``) gets an entry naming that snapshot's thin
        device: no suspend, no pool commit. ``before_snapshots()`` is called
        once the shared entries are made and before any vDisk is suspended
        (the round prunes there; it is not called when there is nothing to
        snapshot).
        """
        return self._create(vdisks, name, 'scheduled', None, share_unchanged, before_snapshots)

    def _marker(self, volume):
        """(marker, writes in flight) of an active vDisk's device, or None (``devmapper.write_marker``).

        The marker adds the device's live table (pool and thin id) and length:
        a remap or a resize is a change too.
        """
        if not volume['active'] or self.write_marker is None:
            return None
        try:
            info = self.dm.info(volume['dm_name'])
            if not info['exists']:
                return None
            _ttype, params, length = self.dm.table(volume['dm_name'])
        except devmapper.DeviceMapperError:
            return None
        counted = self.write_marker(info['major'], info['minor'], '/dev/mapper/' + volume['dm_name'])
        if counted is None:
            return None
        return '%s %s %d' % (counted[0], params, length), counted[1]

    def _unchanged(self, todo, volumes):
        """({vdisk: thin id of its last snapshot}, {vdisk: marker read}) for the vDisks of ``todo``.

        The first: the vDisks that no write reached since their last snapshot.
        Safe because the marker of the last snapshot was read before its origin
        was suspended (a write between the two makes the markers differ) and
        this one with no write in flight: the device holds what it did then.
        The second: every marker read, for the snapshots of the vDisks that did
        change (``_snap``: a marker read any time before the suspend is safe).
        """
        known = dict((r['vdisk'], r) for r in self.db.execute('SELECT * FROM write_marker'))
        result, markers = {}, {}
        # One after another, not in the workers: each read is about 1.1 ms of Python, sysfs and two ioctls, and
        # threads only contend for it (an idle round over 501 vDisks: 2.50-2.59 s read in 4 threads, 1.77-2.12 s
        # in one; docs/snapshots.md).
        for vdisk in todo:
            row = known.get(vdisk)
            if row is None or row['wwn'] != volumes[vdisk]['wwn']:
                continue
            now = self._marker(volumes[vdisk])
            if now is None:
                continue
            markers[vdisk] = now[0]
            if now[1] == 0 and now[0] == row['marker']:
                result[vdisk] = row['thin_id']
        return result, markers

    def _create(self, vdisks, name, kind, parent, share_unchanged, before_snapshots=None):
        rules.check_snapshot(name)
        if kind not in KINDS:
            raise SnapshotError('unknown snapshot kind %r' % kind)
        volumes = self.volumes()
        pending = self.pending_rollbacks()
        taken = set(r[0] for r in self.db.execute('SELECT vdisk FROM snapshot WHERE name = ?', (name,)))
        failures, todo = {}, []
        for vdisk in vdisks:
            if vdisk not in volumes:
                failures[vdisk] = 'vDisk %s is not in pool %s' % (vdisk, self.spec)
            elif vdisk in pending:
                failures[vdisk] = 'a rollback of vDisk %s was interrupted: run it again first' % vdisk
            elif vdisk in taken:
                failures[vdisk] = 'vDisk %s already has a snapshot %s' % (vdisk, name)
            else:
                todo.append(vdisk)
        if not todo:
            return {}, failures, []
        self._activate_pool()
        now = self.clock()
        shared, read = [], {}
        if share_unchanged:
            unchanged, read = self._unchanged(todo, volumes)
            with self.db:
                # The entry is made only while a ready entry still names the device (a prune
                # deciding to delete it marks every entry naming it first, in one transaction).
                self.db.execute('BEGIN IMMEDIATE')
                for vdisk, thin_id in sorted(unchanged.items()):
                    cursor = self.db.execute(
                        "INSERT INTO snapshot SELECT vdisk, ?, thin_id, wwn, size_bytes, ?, ?, 'ready', ? "
                        "FROM snapshot WHERE vdisk = ? AND wwn = ? AND thin_id = ? AND size_bytes = ? "
                        "AND state = 'ready' AND kind != 'clone' LIMIT 1",
                        (name, now, kind, parent, vdisk, volumes[vdisk]['wwn'], thin_id, volumes[vdisk]['size_bytes']))
                    if cursor.rowcount == 1:
                        shared.append(vdisk)
            todo = [v for v in todo if v not in shared]
        if before_snapshots is not None:
            before_snapshots()
        with self.db:
            # Ids are chosen and taken in one write transaction: a clone or another run choosing at the
            # same time waits for it and sees them taken (entries may share ids, so no constraint would).
            self.db.execute('BEGIN IMMEDIATE')
            ids = self._free_ids(len(todo))
            self.db.executemany(
                'INSERT INTO snapshot VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
                [(v, name, i, volumes[v]['wwn'], volumes[v]['size_bytes'], now, kind, 'creating', parent)
                 for v, i in zip(todo, ids)])
        done, markers, avoid, jobs = [], {}, set(ids), list(zip(todo, ids))
        for attempt in range(3):
            retry = []
            for (vdisk, thin_id), marker, exc in self._each(
                    lambda job: self._snap(job[1], volumes[job[0]], marker=read.get(job[0])), jobs):
                if exc is None:
                    markers[vdisk] = (marker, thin_id)
                    done.append(vdisk)
                elif exc.errno != errno.EEXIST or attempt == 2:
                    failures[vdisk] = str(exc)
                else:
                    # The pool has a device of this id the catalog does not name (``audit``: leaked).
                    # Left alone (it is not known whose it is); the snapshot takes another id.
                    retry.append(vdisk)
            if not retry:
                break
            with self.db:
                self.db.execute('BEGIN IMMEDIATE')
                jobs = list(zip(retry, self._free_ids(len(retry), avoid=avoid)))
                avoid.update(i for _v, i in jobs)
                self.db.executemany('UPDATE snapshot SET thin_id = ? WHERE vdisk = ? AND name = ?',
                                    [(i, v, name) for v, i in jobs])
        with self.db:
            self.db.execute('BEGIN')
            self.db.executemany("UPDATE snapshot SET state = 'ready' WHERE vdisk = ? AND name = ?",
                                [(v, name) for v in done])
            self.db.executemany('DELETE FROM snapshot WHERE vdisk = ? AND name = ?',
                                [(v, name) for v in todo if v in failures])
            # The newest snapshot's marker; none (a stale one would be wrong) when it could not be read.
            self.db.executemany('DELETE FROM write_marker WHERE vdisk = ?', [(v,) for v in done])
            self.db.executemany('INSERT INTO write_marker VALUES (?, ?, ?, ?)',
                                [(v, volumes[v]['wwn'], markers[v][0], markers[v][1])
                                 for v in done if markers[v][0] is not None])
        query = self.db.execute('SELECT * FROM snapshot WHERE name = ?', (name,))
        rows = dict((r['vdisk'], Snapshot(r)) for r in query)
        return dict((v, rows[v]) for v in done + shared), failures, shared

    def _each(self, func, items):
        """[(item, func(item), None) or (item, None, DeviceMapperError)] for each item, in order.

        With ``workers`` > 1, that many run at once: each vDisk is still
        suspended only for its own snapshot, and the pool takes its messages
        one at a time, but the calls overlap each other's waits and use every
        CPU (a round's snapshots of 501 changed vDisks in the TCG lab: 6.4-7.5 s
        in 4 threads, 11.1-18.3 s in one; docs/snapshots.md). Any other exception is raised
        once the calls already running have ended (each resumes its vDisk).
        """
        def call(item):
            try:
                return item, func(item), None
            except devmapper.DeviceMapperError as exc:
                return item, None, exc
        if self.workers <= 1 or len(items) <= 1:
            return [call(item) for item in items]
        self.dm.info(self.pool_device)  # libdevmapper opens its control device once, before the threads
        executor = ThreadPoolExecutor(min(self.workers, len(items)))
        try:
            futures = [executor.submit(call, item) for item in items]
            return [f.result() for f in futures]
        finally:
            # On SIGTERM (SystemExit here) or an error: start no more, let the running ones finish.
            executor.shutdown(wait=True, cancel_futures=True)

    def _snap(self, thin_id, origin, origin_id=None, marker=None):
        """Make the snapshot; returns the origin's write marker, read before its suspend (or None).

        ``marker``: one read earlier in this run (``_unchanged``), used as it
        is. Any read before the suspend is safe: a write after it is in the
        snapshot and makes the next marker differ, so the next round takes a
        snapshot it did not need, never the other way round. It saves a second
        read of every changed vDisk (1.1 ms each under TCG).
        """
        origin_id = origin['thin_id'] if origin_id is None else origin_id
        if not origin['active']:
            self._message('create_snap %d %d' % (thin_id, origin_id))
            return None
        if marker is None:
            marker = self._marker(origin)
            marker = marker[0] if marker is not None else None
        # The kernel's thin-provisioning.rst: suspend an active origin while
        # the snapshot is made. Suspending waits for its in-flight writes.
        try:
            self.dm.suspend(origin['dm_name'])
        except devmapper.DeviceMapperError as exc:
            if exc.errno != errno.ENXIO:
                raise
            # Deactivated since lvs read it: nothing to suspend.
            self._message('create_snap %d %d' % (thin_id, origin_id))
            return None
        try:
            self._message('create_snap %d %d' % (thin_id, origin_id))
        finally:
            self._resume(origin['dm_name'])
        return marker

    def _resume(self, name):
        # A device left suspended hangs its initiator's I/O: try hard.
        for attempt in range(5):
            try:
                self.dm.resume(name)
                return
            except devmapper.DeviceMapperError:
                if attempt == 4:
                    raise
                time.sleep(0.2)

    def delete(self, snapshots):
        """Delete snapshots: ([deleted], {(vdisk, name): error}).

        A thin device goes with the last entry that names it (entries of
        unchanged rounds share one).
        """
        if not snapshots:
            return [], {}
        self._activate_pool()
        keys = [(s.vdisk, s.name) for s in snapshots]
        with self.db:
            self.db.execute('BEGIN IMMEDIATE')
            self.db.executemany("UPDATE snapshot SET state = 'deleting' WHERE vdisk = ? AND name = ?", keys)
            ids = sorted(set(s.thin_id for s in snapshots))
            named = set()
            for start in range(0, len(ids), QUERY_CHUNK):
                chunk = ids[start:start + QUERY_CHUNK]
                named.update(r[0] for r in self.db.execute(
                    "SELECT DISTINCT thin_id FROM snapshot WHERE state != 'deleting' AND thin_id IN (%s)"
                    % ', '.join('?' * len(chunk)), chunk))
            last = [i for i in ids if i not in named]
        # ENODATA: already gone (a run that died after the message).
        errors = dict((thin_id, str(exc)) for thin_id, _result, exc in self._each(
            lambda thin_id: self._message('delete %d' % thin_id, ok=(errno.ENODATA,)), last) if exc is not None)
        done = [s for s in snapshots if s.thin_id not in errors]
        with self.db:
            self.db.execute('BEGIN')
            self.db.executemany('DELETE FROM snapshot WHERE vdisk = ? AND name = ?', [(s.vdisk, s.name) for s in done])
            self.db.executemany("UPDATE snapshot SET state = 'ready' WHERE vdisk = ? AND name = ?",
                                [(s.vdisk, s.name) for s in snapshots if s.thin_id in errors])
            self.db.executemany('DELETE FROM write_marker WHERE thin_id = ?',
                                [(i,) for i in last if i not in errors])
        return done, dict(((s.vdisk, s.name), errors[s.thin_id]) for s in snapshots if s.thin_id in errors)

    def finish_interrupted(self):
        """Finish what a run that died left: snapshots half made are removed, half deleted ones deleted.

        A run killed between the suspend and the resume of a vDisk left it
        suspended, and its initiator's I/O waits: resume it. (Only these runs
        suspend vDisks, under the host lock the caller holds.) Such a run
        always leaves a trace: a snapshot suspends its vDisk only while the
        catalog has its entry as ``creating``, a rollback only while it is in
        ``rollback``. Without one, no vDisk is looked at (one call each: 0.23 s
        for 501 in a profile of a round under TCG); ``audit`` looks at every one.
        """
        rows = [Snapshot(r) for r in self.db.execute("SELECT * FROM snapshot WHERE state != 'ready'")]
        if rows or self.pending_rollbacks():
            for volume in self.volumes().values():
                if volume['active'] and self.dm.info(volume['dm_name'])['suspended']:
                    self._resume(volume['dm_name'])
        if rows:
            return self.delete(rows)
        return [], {}

    def rollback(self, vdisk, name, safety_name):
        """Give ``vdisk`` the content of its snapshot ``name``.

        The origin keeps its thin id (so LVM's record of it stays true): it is
        deleted and made again as a snapshot of the snapshot. Its content
        before the rollback is kept first as snapshot ``safety_name``.

        An active vDisk stays active and open (LIO's export, its LUNs and
        sessions are untouched): its device is pointed at a temporary copy of
        the snapshot while its own thin id is made again, in two suspends. Its
        I/O waits in each and none fails; I/O after the first goes to the
        snapshot's content. An inactive vDisk is swapped as it is.
        """
        volumes = self.volumes()
        origin = volumes.get(vdisk)
        if origin is None:
            raise SnapshotError('vDisk %s is not in pool %s' % (vdisk, self.spec))
        snap = self.get(vdisk, name)
        if snap is None or snap.state != 'ready' or snap.wwn != origin['wwn']:
            raise SnapshotError('vDisk %s has no snapshot %s' % (vdisk, name))
        self._activate_pool()
        live = self.dm.exists(origin['dm_name'])
        if vdisk not in self.pending_rollbacks():
            created, failures = self.create([vdisk], safety_name, kind='pre-rollback', parent=name)
            if failures:
                raise SnapshotError('keeping the content before the rollback failed: %s' % failures[vdisk])
            with self.db:
                self.db.execute('BEGIN')
                self.db.execute('INSERT INTO rollback VALUES (?, ?, ?)', (vdisk, origin['thin_id'], snap.thin_id))
        # The content changes with no write the kernel counts: the next round must snapshot it.
        with self.db:
            self.db.execute('BEGIN')
            self.db.execute('DELETE FROM write_marker WHERE vdisk = ?', (vdisk,))
        # Every step is safe to repeat: a rollback that died anywhere is finished by the next call.
        if live:
            self._rollback_live(vdisk, origin, snap)
        else:
            self._message('delete %d' % origin['thin_id'], ok=(errno.ENODATA,))
            self._message('create_snap %d %d' % (origin['thin_id'], snap.thin_id))
        temps = [r[0] for r in self.db.execute('SELECT thin_id FROM rollback_temp WHERE vdisk = ?', (vdisk,))]
        for temp in temps:  # none is mapped now: a live rollback pointed the device back at the origin's id
            self._message('delete %d' % temp, ok=(errno.ENODATA,))
        with self.db:
            self.db.execute('BEGIN')
            self.db.execute('DELETE FROM rollback_temp WHERE vdisk = ?', (vdisk,))
            self.db.execute('DELETE FROM rollback WHERE vdisk = ?', (vdisk,))
        return snap

    def _rollback_live(self, vdisk, origin, snap):
        device = origin['dm_name']
        ttype, params, length = self.dm.table(device)
        fields = params.split()
        if ttype != 'thin' or len(fields) < 2:
            raise SnapshotError('vDisk %s: unexpected device-mapper table %s %s' % (vdisk, ttype, params))
        pool_dev = fields[0]
        with self.db:
            self.db.execute('BEGIN IMMEDIATE')
            temp = self._free_ids(1)[0]
            self.db.execute('INSERT INTO rollback_temp VALUES (?, ?)', (vdisk, temp))
        self._message('create_snap %d %d' % (temp, snap.thin_id))
        # 1. The device serves the snapshot's content (the copy); the origin's id is no longer open.
        self._remap(device, length, '%s %d' % (pool_dev, temp))
        self._drop_cached(device)

        def remake_origin():
            # The copy is the suspended origin of this snapshot (thin-provisioning.rst).
            self._message('delete %d' % origin['thin_id'], ok=(errno.ENODATA,))
            self._message('create_snap %d %d' % (origin['thin_id'], temp))
        # 2. The origin's id made again from the copy (no write is lost: the device is suspended), and mapped again.
        self._remap(device, length, '%s %d' % (pool_dev, origin['thin_id']), before=remake_origin)
        self._drop_cached(device)

    def _drop_cached(self, device):
        """Drop this host's page cache of a remapped device.

        A write-through vDisk is exported by fileio, which reads through that
        cache: without this it would go on serving blocks of the content before
        the rollback. Its writes are synchronous, so nothing dirty is lost.
        """
        try:
            self.dm.drop_cache(device)
        except devmapper.DeviceMapperError as exc:
            raise SnapshotError('the rollback is done, but %s (a write-through export may serve old blocks until '
                                'it is done)' % exc)

    def _remap(self, device, length, params, before=None):
        """Point an active thin device at another thin id; its I/O waits meanwhile."""
        self.dm.suspend(device)
        try:
            if before is not None:
                before()
            self.dm.reload(device, length, 'thin', params)
        finally:
            self._resume(device)  # makes the reloaded table live; without one, the device is as it was

    # --- looking inside a snapshot ----------------------------------------

    def clone(self, vdisk, name, clone_name):
        """A writable device holding snapshot ``name``'s content (the snapshot stays as it is): its path."""
        snap = self.get(vdisk, name)
        if snap is None or snap.state != 'ready':
            raise SnapshotError('vDisk %s has no snapshot %s' % (vdisk, name))
        self._activate_pool()
        clone = self.get(vdisk, clone_name)
        if clone is None:
            with self.db:
                self.db.execute('BEGIN IMMEDIATE')
                thin_id = self._free_ids(1)[0]
                self.db.execute('INSERT INTO snapshot VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
                                (vdisk, clone_name, thin_id, snap.wwn, snap.size_bytes, self.clock(), 'clone',
                                 'creating', name))
            self._message('create_snap %d %d' % (thin_id, snap.thin_id))
            with self.db:
                self.db.execute('BEGIN')
                self.db.execute("UPDATE snapshot SET state = 'ready' WHERE thin_id = ?", (thin_id,))
            clone = self.get(vdisk, clone_name)
        device = CLONE_PREFIX + str(clone.thin_id)
        if not self.dm.exists(device):
            self.dm.create(device, clone.size_bytes // 512, 'thin', '/dev/mapper/%s %d'
                           % (self.pool_device, clone.thin_id))
        return '/dev/mapper/' + device

    def drop_clone(self, vdisk, clone_name):
        clone = self.get(vdisk, clone_name)
        if clone is None:
            return False
        if clone.kind != 'clone':
            raise SnapshotError('%s of vDisk %s is a snapshot, not a clone' % (clone_name, vdisk))
        device = CLONE_PREFIX + str(clone.thin_id)
        if self.dm.exists(device):
            self.dm.remove(device)
        _done, failures = self.delete([clone])
        if failures:
            raise SnapshotError(list(failures.values())[0])
        return True

    def audit(self):
        """The catalog against the pool, for after a crash: {'unfinished', 'missing', 'leaked', 'suspended'}.

        unfinished: snapshots a run left half made or half deleted (the next
        round or module run finishes them); missing: catalogued snapshots the
        pool does not have; leaked: snapshot-range thin devices no catalog row
        names (space nothing would ever free); suspended: active vDisks left
        suspended. All empty means consistent.
        """
        in_pool = set(i for i in self.space() if i >= FIRST_ID)
        rows = [Snapshot(r) for r in self.db.execute('SELECT * FROM snapshot ORDER BY thin_id')]
        temps = set(r[0] for r in self.db.execute('SELECT thin_id FROM rollback_temp'))
        catalogued = set(s.thin_id for s in rows) | temps

        def label(s):
            return '%s@%s (%s, id %d)' % (s.vdisk, s.name, s.state, s.thin_id)
        return {
            'unfinished': [label(s) for s in rows if s.state != 'ready']
            + ['rollback of %s (interrupted: run it again)' % v for v in sorted(self.pending_rollbacks())],
            # A half-made snapshot may not be in the pool yet: only finished ones count as missing.
            'missing': [label(s) for s in rows if s.state == 'ready' and s.thin_id not in in_pool],
            'leaked': sorted(in_pool - catalogued),
            'suspended': sorted(v['dm_name'] for v in self.volumes().values()
                                if v['active'] and self.dm.info(v['dm_name'])['suspended']),
        }

    def space(self):
        """{thin id: (mapped bytes, exclusive bytes)} for every thin device, from a metadata snapshot."""
        self._activate_pool()
        meta = '/dev/mapper/' + devmapper.dm_name(self.vg, self.thin_pool + '_tmeta')
        self._message('reserve_metadata_snap')
        try:
            rc, out, err = self.run(['thin_ls', '--metadata-snap', '--no-headers', '--format',
                                     'DEV,MAPPED_BYTES,EXCLUSIVE_BYTES', meta])
        finally:
            self._message('release_metadata_snap', ok=(errno.EINVAL,))
        if rc != 0:
            raise SnapshotError('thin_ls failed: %s' % (err or out).strip())
        result = {}
        for line in out.splitlines():
            fields = line.split()
            if len(fields) == 3 and all(f.isdigit() for f in fields):
                result[int(fields[0])] = (int(fields[1]), int(fields[2]))
        return result
