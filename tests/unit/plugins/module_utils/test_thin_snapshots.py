# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Snapshot logic against a model of dm-thin: ids, journalling, failures, rollback, retention, guard, check.

The real thing (dm-thin, LIO, an initiator writing through 1-minute rounds,
rollback checksums, the guard under fio) is the storage_api lab scenario.
"""

from __future__ import annotations

import errno
import json
import os
import threading

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import devmapper, pool_layout
from ansible_collections.clusterducks.vdisk.plugins.module_utils import snapshot_schedule as sched
from ansible_collections.clusterducks.vdisk.plugins.module_utils import thin_snapshots as ts

POOL = 'lvm-thin:vdisks/pool'
TPOOL = 'vdisks-pool-tpool'
MINUTE, HOUR, DAY = 60, 3600, 86400


class FakeThinPool:
    """dm-thin as the snapshots see it: thin devices by id, origins that suspend, a status line."""

    def __init__(self, origins):
        # origin name -> thin id; every origin and snapshot id -> content tag
        self.devices = dict((thin_id, 'content of %s' % name) for name, thin_id in origins.items())
        self.active = set('vdisks-vdisk--%s' % n.replace('-', '--') for n in origins)
        # each active thin device's live table (its thin id), and a loaded next one
        self.mapping = dict(('vdisks-vdisk--%s' % n.replace('-', '--'), i) for n, i in origins.items())
        self.inactive = {}
        self.suspended = set()
        self.log = []
        self.fail = {}  # (call, arg) -> errno
        self.used, self.total = 100, 1000
        self.opened = set()
        # the kernel's counts of each active device's writes, and writes in flight
        self.writes = dict((n, 0) for n in self.active)
        self.in_flight = dict((n, 0) for n in self.active)
        self.diskseq = dict((n, 1) for n in self.active)
        self.counting = True

    def write(self, name, content):
        """A write through the active device ``name``, as an initiator's reaches it (counted)."""
        self.devices[self.mapping[name]] = content
        self.writes[name] = self.writes.get(name, 0) + 1

    def write_marker(self, major, minor, node):
        name = node[len('/dev/mapper/'):]
        assert (major, minor) == (253, sorted(self.mapping).index(name) + 10)
        if name not in self.active or not self.counting:
            return None
        return 'boot %d %d 0 0 0' % (self.diskseq[name], self.writes[name]), self.in_flight[name]

    def _maybe_fail(self, call, arg):
        code = self.fail.get((call, arg))
        if code:
            if isinstance(code, list):
                code = code.pop(0) if code else None
                if not code:  # 0: this call passes, a later one fails
                    return
            raise devmapper.DeviceMapperError(code, '%s %s: %s' % (call, arg, os.strerror(code)))

    def suspend(self, name):
        self._maybe_fail('suspend', name)
        if name not in self.active:
            raise devmapper.DeviceMapperError(errno.ENXIO, 'no such device')
        self.log.append(('suspend', name))
        self.suspended.add(name)

    def resume(self, name):
        self._maybe_fail('resume', name)
        self.log.append(('resume', name))
        self.suspended.discard(name)
        if name in self.inactive:
            self.mapping[name] = self.inactive.pop(name)

    def drop_cache(self, name):
        self._maybe_fail('drop_cache', name)
        self.log.append(('drop_cache', name))

    def reload(self, name, sectors, target, params):
        self._maybe_fail('reload', name)
        assert target == 'thin' and name in self.active
        self.log.append(('reload', name, params))
        self.inactive[name] = int(params.split()[1])

    def _open_ids(self):
        return set(self.mapping[n] for n in self.active if n in self.mapping)

    def _running_ids(self):
        return set(self.mapping[n] for n in self.active if n in self.mapping and n not in self.suspended)

    def message(self, name, text):
        assert name == TPOOL
        self._maybe_fail('message', text)
        self.log.append(('message', text))
        words = text.split()
        if words[0] == 'create_snap':
            new, origin = int(words[1]), int(words[2])
            if new in self.devices:
                raise devmapper.DeviceMapperError(errno.EEXIST, 'exists')
            if origin not in self.devices:
                raise devmapper.DeviceMapperError(errno.ENODATA, 'no origin')
            # thin-provisioning.rst: an active origin must be suspended (a model check, not the kernel's)
            assert origin not in self._running_ids(), 'create_snap of a running origin %d' % origin
            self.devices[new] = self.devices[origin]
        elif words[0] == 'delete':
            thin_id = int(words[1])
            if thin_id not in self.devices:
                raise devmapper.DeviceMapperError(errno.ENODATA, 'gone')
            if thin_id in self.opened or thin_id in self._open_ids():
                raise devmapper.DeviceMapperError(errno.EBUSY, 'busy')
            del self.devices[thin_id]
            self.used -= 10
        return ''

    def info(self, name):
        minor = sorted(self.mapping).index(name) + 10 if name in self.mapping else 0
        return {'exists': name in self.active or name == TPOOL, 'suspended': name in self.suspended, 'open_count': 0,
                'major': 253, 'minor': minor}

    def exists(self, name):
        return self.info(name)['exists']

    def status(self, name):
        return ('thin-pool', '1 10/1000 %d/%d - rw discard_passdown queue_if_no_space - 1024' % (self.used, self.total),
                2048)

    def table(self, name):
        if name in self.mapping and name in self.active:
            return ('thin', '253:2 %d' % self.mapping[name], 2048)
        return ('thin-pool', '253:0 253:1 128 0 1 skip_block_zeroing', 2048)

    def content(self, name):
        """What the active device ``name`` reads."""
        return self.devices[self.mapping[name]]


class Lvm:
    def __init__(self, volumes, pool=None):
        self.volumes = volumes  # name -> (thin id, active)
        self.pool = pool  # FakeThinPool: what thin_ls reads

    def __call__(self, argv):
        if argv[0] == 'thin_ls':
            assert '--metadata-snap' in argv and self.pool.log[-1] == ('message', 'reserve_metadata_snap')
            return 0, ''.join('%d %d %d\n' % (i, 65536, 0) for i in sorted(self.pool.devices)), ''
        assert argv[0] == 'lvs', argv
        lv = [{'lv_name': 'vdisk-' + n, 'lv_size': str(1 << 30), 'thin_id': str(i), 'pool_lv': 'pool',
               'lv_attr': 'Vwi-a-tz--' if a else 'Vwi---tz--'} for n, (i, a) in self.volumes.items()]
        lv.append({'lv_name': 'pool', 'lv_size': str(8 << 30), 'thin_id': '', 'pool_lv': '', 'lv_attr': 'twi-aotz--'})
        return 0, json.dumps({'report': [{'lv': lv}]}), ''


class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def env(tmp_path, monkeypatch):
    return make_env(tmp_path, monkeypatch, {'node01': 1, 'node02': 2, 'node03': 3})


@pytest.fixture
def many(tmp_path, monkeypatch):
    """Twelve vDisks, opened with 4 workers as a round is."""
    e = make_env(tmp_path, monkeypatch, dict(('vd%02d' % i, i) for i in range(1, 13)))
    e.open = lambda: ts.ThinSnapshots(POOL, e.lvm, dm=e.dm, clock=e.clock, write_marker=e.dm.write_marker, workers=4)
    return e


def make_env(tmp_path, monkeypatch, names):
    monkeypatch.setattr(pool_layout, 'LVM_THIN_METADATA_ROOT', str(tmp_path / 'meta'))

    def write_meta(name, wwn):
        d = tmp_path / 'meta' / 'vdisks' / 'pool' / name
        d.mkdir(parents=True, exist_ok=True)
        (d / 'vdisk.json').write_text(json.dumps({'name': name, 'wwn': wwn, 'backing': '/dev/vdisks/vdisk-' + name}))

    for name in names:
        write_meta(name, 'wwn-' + name)
    dm = FakeThinPool(names)
    lvm = Lvm(dict((n, (i, True)) for n, i in names.items()), dm)
    clock = Clock()

    class Env:
        pass

    e = Env()
    e.dm, e.lvm, e.clock, e.write_meta, e.tmp = dm, lvm, clock, write_meta, tmp_path
    e.open = lambda: ts.ThinSnapshots(POOL, lvm, dm=dm, clock=clock, write_marker=dm.write_marker)
    return e


def test_create_suspends_each_origin_around_its_message_only(env):
    snaps = env.open()
    created, failures = snaps.create(['node01', 'node02'], 'first')
    assert failures == {}
    assert sorted(created) == ['node01', 'node02']
    assert env.dm.log == [
        ('suspend', 'vdisks-vdisk--node01'), ('message', 'create_snap %d 1' % ts.FIRST_ID),
        ('resume', 'vdisks-vdisk--node01'),
        ('suspend', 'vdisks-vdisk--node02'), ('message', 'create_snap %d 2' % (ts.FIRST_ID + 1)),
        ('resume', 'vdisks-vdisk--node02')]
    assert [s.name for s in snaps.list('node01')] == ['first']
    assert env.dm.devices[ts.FIRST_ID] == 'content of node01'


def _watch_suspends(dm):
    """Record the most origins suspended at once; returns the record."""
    lock, seen = threading.Lock(), {'most': 0}
    suspend = dm.suspend

    def watched(name):
        suspend(name)
        with lock:
            seen['most'] = max(seen['most'], len(dm.suspended))
    dm.suspend = watched
    return seen


def test_workers_snapshot_vdisks_at_once_each_suspended_only_for_its_own(many):
    # The first two snapshots meet at a barrier: they pass only if two run at once (one worker: BrokenBarrierError).
    barrier, message = threading.Barrier(2, timeout=10), many.dm.message

    def meeting(name, text):
        if text.split()[-1] in ('1', '2'):
            barrier.wait()
        return message(name, text)
    many.dm.message = meeting
    seen = _watch_suspends(many.dm)
    created, failures = many.open().create(sorted('vd%02d' % i for i in range(1, 13)), 'first')
    assert failures == {} and len(created) == 12
    assert sorted(s.thin_id for s in created.values()) == list(range(ts.FIRST_ID, ts.FIRST_ID + 12))
    for vdisk, snap in created.items():
        dev = 'vdisks-vdisk--' + vdisk
        assert many.dm.devices[snap.thin_id] == 'content of ' + vdisk
        # this origin's own calls, in order: suspended for its own message only
        own = [c for c in many.dm.log if c[1] == dev or c[1].endswith(' %d' % int(vdisk[2:]))]
        assert own == [('suspend', dev), ('message', 'create_snap %d %d' % (snap.thin_id, int(vdisk[2:]))),
                       ('resume', dev)]
    assert 2 <= seen['most'] <= 4
    assert many.dm.suspended == set()


def test_workers_keep_failures_apart_and_step_over_taken_ids(many):
    many.dm.fail[('suspend', 'vdisks-vdisk--vd03')] = errno.EIO
    many.dm.devices[ts.FIRST_ID + 5] = 'leaked: a device the catalog does not name'
    created, failures = many.open().create(sorted('vd%02d' % i for i in range(1, 13)), 'x')
    assert sorted(failures) == ['vd03'] and 'suspend' in failures['vd03']
    assert len(created) == 11 and len(set(s.thin_id for s in created.values())) == 11
    assert ts.FIRST_ID + 5 not in [s.thin_id for s in created.values()]
    assert many.dm.devices[ts.FIRST_ID + 5] == 'leaked: a device the catalog does not name'
    assert all(many.dm.devices[s.thin_id] == 'content of ' + v for v, s in created.items())
    assert many.open().audit() == {'unfinished': [], 'missing': [], 'leaked': [ts.FIRST_ID + 5], 'suspended': []}


def test_workers_delete_at_once_and_report_each_failure(many):
    snaps = many.open()
    created, _failures = snaps.create(sorted('vd%02d' % i for i in range(1, 13)), 'x')
    busy = created['vd07'].thin_id
    many.dm.opened.add(busy)
    deleted, failures = snaps.delete(list(created.values()))
    assert len(deleted) == 11 and list(failures) == [('vd07', 'x')] and 'busy' in failures[('vd07', 'x')]
    assert sorted(i for i in many.dm.devices if i >= ts.FIRST_ID) == [busy]
    assert [s.name for s in snaps.list()] == ['x'] and snaps.list()[0].state == 'ready'


def test_an_error_in_a_worker_ends_the_run_with_no_vdisk_left_suspended(many):
    message = many.dm.message

    def broken(name, text):
        if text.endswith(' 5'):
            raise RuntimeError('a bug, not a device-mapper error')
        return message(name, text)
    many.dm.message = broken
    with pytest.raises(RuntimeError, match='a bug'):
        many.open().create(sorted('vd%02d' % i for i in range(1, 13)), 'x')
    assert many.dm.suspended == set()
    assert many.open().audit()['suspended'] == []


def test_inactive_origin_is_not_suspended(env):
    env.lvm.volumes['node03'] = (3, False)
    env.dm.active.discard('vdisks-vdisk--node03')
    env.dm.active.discard('vdisks-vdisk--node02')  # deactivated after lvs read it
    snaps = env.open()
    created, failures = snaps.create(['node03', 'node02'], 's')
    assert failures == {} and sorted(created) == ['node02', 'node03']
    assert [call for call, _arg in env.dm.log] == ['message', 'message']


def test_one_vdisk_failing_does_not_stop_the_others(env):
    env.dm.fail[('message', 'create_snap %d 1' % ts.FIRST_ID)] = errno.ENOSPC
    snaps = env.open()
    created, failures = snaps.create(['node01', 'node02', 'nosuch'], 'x')
    assert sorted(created) == ['node02']
    assert 'No space left' in failures['node01']
    assert 'not in pool' in failures['nosuch']
    assert snaps.get('node01', 'x') is None  # its catalog row is gone with it
    assert env.dm.suspended == set()  # resumed although the message failed


def test_a_resume_that_fails_once_is_retried(env, monkeypatch):
    monkeypatch.setattr(ts.time, 'sleep', lambda s: None)
    env.dm.fail[('resume', 'vdisks-vdisk--node01')] = [errno.EBUSY]
    snaps = env.open()
    created, failures = snaps.create(['node01'], 'x')
    assert failures == {} and env.dm.suspended == set()


def test_names_and_duplicates_are_refused(env):
    snaps = env.open()
    snaps.create(['node01'], 'x')
    _created, failures = snaps.create(['node01'], 'x')
    assert 'already has a snapshot x' in failures['node01']
    for bad in ('', 'a/b', '../x', 'x\n', '-x', 'x' * 64):
        with pytest.raises(Exception, match='invalid'):
            snaps.create(['node01'], bad)


def test_ids_are_above_lvm_and_reused_after_wrapping(env, monkeypatch):
    snaps = env.open()
    snaps.create(['node01'], 'a')
    assert snaps.get('node01', 'a').thin_id == ts.FIRST_ID
    monkeypatch.setattr(ts, 'LAST_ID', ts.FIRST_ID + 2)
    snaps.create(['node01'], 'b')
    snaps.create(['node01'], 'c')
    snaps.delete([snaps.get('node01', 'a')])
    snaps.create(['node01'], 'd')  # past LAST_ID: takes the freed first id
    assert snaps.get('node01', 'd').thin_id == ts.FIRST_ID


def test_delete_tolerates_a_snapshot_already_gone_and_reports_busy(env):
    snaps = env.open()
    snaps.create(['node01', 'node02'], 'x')
    a, b = snaps.get('node01', 'x'), snaps.get('node02', 'x')
    del env.dm.devices[a.thin_id]  # a run died after its delete message
    env.dm.opened.add(b.thin_id)
    done, failures = snaps.delete([a, b])
    assert [s.vdisk for s in done] == ['node01']
    assert 'busy' in list(failures.values())[0].lower()
    assert snaps.get('node01', 'x') is None
    assert snaps.get('node02', 'x').state == 'ready'


def test_a_run_that_died_mid_create_is_cleaned_up(env):
    snaps = env.open()
    env.dm.fail[('resume', 'vdisks-vdisk--node02')] = errno.EIO  # stands for a crash after the insert

    class Crash(Exception):
        pass

    def crash(*args, **kwargs):
        raise Crash()

    snaps._snap = crash
    with pytest.raises(Crash):
        snaps.create(['node01'], 'x')
    again = env.open()
    assert again.get('node01', 'x').state == 'creating'
    done, failures = again.finish_interrupted()
    assert failures == {} and again.get('node01', 'x') is None


def test_a_new_vdisk_of_the_same_name_does_not_inherit_snapshots(env):
    snaps = env.open()
    snaps.create(['node01'], 'old')
    env.write_meta('node01', 'wwn-new')  # deleted and made again
    snaps = env.open()
    assert snaps.list('node01') == []
    assert [s.name for s in snaps.orphans()] == ['old']
    with pytest.raises(ts.SnapshotError, match='no snapshot old'):
        env.dm.active.discard('vdisks-vdisk--node01')
        snaps.rollback('node01', 'old', 'pre')


def test_rollback_of_an_inactive_vdisk_keeps_the_current_content_and_reuses_the_origin_id(env):
    snaps = env.open()
    snaps.create(['node01'], 'good')
    env.dm.devices[1] = 'later content'
    env.dm.active.discard('vdisks-vdisk--node01')
    snaps.rollback('node01', 'good', 'pre')
    assert env.dm.devices[1] == 'content of node01'  # LVM's thin id now holds the snapshot's content
    pre = snaps.get('node01', 'pre')
    assert pre.kind == 'pre-rollback' and env.dm.devices[pre.thin_id] == 'later content'
    assert snaps.get('node01', 'good').state == 'ready'  # the snapshot itself stays
    assert snaps.pending_rollbacks() == {}


def test_a_rollback_that_died_between_delete_and_create_is_finished(env):
    snaps = env.open()
    snaps.create(['node01'], 'good')
    env.dm.devices[1] = 'later content'
    env.dm.active.discard('vdisks-vdisk--node01')
    env.dm.fail[('message', 'create_snap 1 %d' % snaps.get('node01', 'good').thin_id)] = [errno.EIO]
    with pytest.raises(devmapper.DeviceMapperError):
        snaps.rollback('node01', 'good', 'pre')
    assert 1 not in env.dm.devices  # the origin is gone: only the rollback can bring it back
    snaps = env.open()
    assert 'node01' in snaps.pending_rollbacks()
    _created, failures = snaps.create(['node01'], 'meanwhile')
    assert 'interrupted' in failures['node01']  # no snapshot of a half-rolled-back disk
    snaps.rollback('node01', 'good', 'pre')
    assert env.dm.devices[1] == 'content of node01'
    assert env.dm.devices[snaps.get('node01', 'pre').thin_id] == 'later content'


D1 = 'vdisks-vdisk--node01'


def test_rollback_of_an_active_vdisk_remaps_it_in_two_suspends_and_reuses_the_origin_id(env):
    snaps = env.open()
    snaps.create(['node01'], 'good')
    good = snaps.get('node01', 'good').thin_id
    env.dm.devices[1] = 'later content'
    env.dm.log.clear()
    snaps.rollback('node01', 'good', 'pre')
    assert env.dm.mapping[D1] == 1 and env.dm.content(D1) == 'content of node01'  # LVM's id, the snapshot's content
    assert env.dm.devices[snaps.get('node01', 'pre').thin_id] == 'later content'
    assert D1 in env.dm.active and not env.dm.suspended  # never deactivated (LIO keeps it open)
    pre = snaps.get('node01', 'pre').thin_id
    temp_id = pre + 1
    assert env.dm.log == [
        ('suspend', D1), ('message', 'create_snap %d 1' % pre), ('resume', D1),  # the content before, kept
        ('message', 'create_snap %d %d' % (temp_id, good)),  # a copy of the snapshot
        ('suspend', D1), ('reload', D1, '253:2 %d' % temp_id), ('resume', D1),  # the device serves it
        ('drop_cache', D1),  # a write-through (fileio) export reads through the page cache
        ('suspend', D1), ('message', 'delete 1'), ('message', 'create_snap 1 %d' % temp_id),  # the origin's id again
        ('reload', D1, '253:2 1'), ('resume', D1), ('drop_cache', D1),
        ('message', 'delete %d' % temp_id),  # the copy goes
    ]
    assert temp_id not in env.dm.devices and snaps.pending_rollbacks() == {}
    assert snaps.audit() == {'unfinished': [], 'missing': [], 'leaked': [], 'suspended': []}


@pytest.mark.parametrize('dies_at', ['reload', 'create_snap 1', 'delete 1', 'second reload'])
def test_a_live_rollback_that_died_anywhere_is_finished_by_the_next(env, dies_at):
    snaps = env.open()
    snaps.create(['node01'], 'good')
    env.dm.devices[1] = 'later content'
    if dies_at == 'reload':
        env.dm.fail[('reload', D1)] = [errno.EIO]
    elif dies_at == 'second reload':
        env.dm.fail[('reload', D1)] = [0, errno.EIO]
    else:
        real = env.dm.message

        def message(name, text):
            if text.startswith(dies_at + ' ') or text == dies_at:
                env.dm.message = real
                raise devmapper.DeviceMapperError(errno.EIO, 'I/O error')
            return real(name, text)
        env.dm.message = message
    with pytest.raises(devmapper.DeviceMapperError):
        snaps.rollback('node01', 'good', 'pre')
    assert not env.dm.suspended  # never left suspended, whatever failed
    snaps = env.open()
    assert 'node01' in snaps.pending_rollbacks()
    assert any('rollback of node01' in u for u in snaps.audit()['unfinished'])
    snaps.rollback('node01', 'good', 'pre')
    assert env.dm.mapping[D1] == 1 and env.dm.content(D1) == 'content of node01'
    assert env.dm.devices[snaps.get('node01', 'pre').thin_id] == 'later content'
    assert snaps.audit() == {'unfinished': [], 'missing': [], 'leaked': [], 'suspended': []}
    assert sorted(i for i in env.dm.devices if i >= ts.FIRST_ID) == sorted(
        s.thin_id for s in snaps.list('node01'))  # no copy left behind


def test_a_rollback_whose_cache_drop_failed_says_so_and_the_next_finishes_it(env):
    snaps = env.open()
    snaps.create(['node01'], 'good')
    env.dm.devices[1] = 'later content'
    env.dm.fail[('drop_cache', D1)] = [errno.EBUSY]
    with pytest.raises(ts.SnapshotError, match='dropping the cached blocks|drop_cache'):
        snaps.rollback('node01', 'good', 'pre')
    assert not env.dm.suspended and 'node01' in env.open().pending_rollbacks()
    snaps = env.open()
    snaps.rollback('node01', 'good', 'pre')
    assert env.dm.content(D1) == 'content of node01' and env.dm.log.count(('drop_cache', D1)) >= 2
    assert snaps.audit() == {'unfinished': [], 'missing': [], 'leaked': [], 'suspended': []}


class PowerCut(BaseException):
    """The process dies here: nothing after it runs, no except clause sees it."""


def test_audit_after_a_round_died_half_way_then_the_next_run_finishes_it(env):
    snaps = env.open()
    snaps.create(['node01', 'node02', 'node03'], 'old')
    olds = dict((v, snaps.get(v, 'old').thin_id) for v in ('node01', 'node02', 'node03'))
    assert env.open().audit() == {'unfinished': [], 'missing': [], 'leaked': [], 'suspended': []}

    real_message = env.dm.message

    def dies_on_the_second_snapshot(name, text):
        if text.startswith('create_snap') and sum(1 for e in env.dm.log if e[1].startswith('create_snap')) == 4:
            raise PowerCut()  # node02 is suspended here, its snapshot not made
        return real_message(name, text)

    env.dm.message = dies_on_the_second_snapshot
    with pytest.raises(PowerCut):
        env.open().create(['node01', 'node02', 'node03'], 'cut')
    env.dm.message = real_message
    env.dm.suspended.add('vdisks-vdisk--node02')  # a SIGKILL runs no finally: the resume never came
    report = env.open().audit()
    assert [u.split(' ')[0] for u in report['unfinished']] == ['node01@cut', 'node02@cut', 'node03@cut']
    assert report['missing'] == [] and report['leaked'] == []
    assert report['suspended'] == ['vdisks-vdisk--node02']

    snaps = env.open()
    snaps.finish_interrupted()
    assert snaps.audit() == {'unfinished': [], 'missing': [], 'leaked': [], 'suspended': []}
    # The half-made snapshot (node01's was in the pool) is gone with the rest; the old ones stay.
    assert sorted(i for i in env.dm.devices if i >= ts.FIRST_ID) == sorted(olds.values())


def test_the_catalog_syncs_its_directory_on_commit(env):
    # A rollback-journal commit is the journal's unlink: only EXTRA (3) makes it survive a power-cut.
    assert env.open().db.execute('PRAGMA synchronous').fetchone()[0] == 3


def test_a_snapshot_steps_over_an_id_the_catalog_lost(env):
    snaps = env.open()
    snaps.create(['node01'], 'first')
    lost = snaps.get('node01', 'first').thin_id + 1
    env.dm.devices[lost] = 'made by a round whose catalog rows a power-cut undid'
    env.dm.devices[lost + 1] = 'another'
    created, failures = env.open().create(['node01', 'node02'], 'next')
    assert failures == {} and sorted(created) == ['node01', 'node02']
    ids = [created[v].thin_id for v in ('node01', 'node02')]
    assert lost not in ids and lost + 1 not in ids and len(set(ids)) == 2
    assert env.dm.devices[lost] == 'made by a round whose catalog rows a power-cut undid'  # not deleted
    assert env.open().audit()['leaked'] == [lost, lost + 1]


def test_audit_names_missing_and_leaked_snapshots(env):
    snaps = env.open()
    snaps.create(['node01'], 'kept')
    lost = snaps.get('node01', 'kept').thin_id
    del env.dm.devices[lost]
    env.dm.devices[ts.FIRST_ID + 999] = 'nobody knows'
    report = env.open().audit()
    assert report['missing'] == ['node01@kept (ready, id %d)' % lost]
    assert report['leaked'] == [ts.FIRST_ID + 999]


def test_clone_and_drop(env):
    created = []
    env.dm.create = lambda name, sectors, target, params, read_only=False: created.append((name, params))
    env.dm.remove = lambda name: None
    snaps = env.open()
    snaps.create(['node01'], 'good')
    path = snaps.clone('node01', 'good', 'look')
    clone = snaps.get('node01', 'look')
    assert clone.kind == 'clone' and path == '/dev/mapper/clusterducks-clone-%d' % clone.thin_id
    assert created == [('clusterducks-clone-%d' % clone.thin_id, '/dev/mapper/%s %d' % (TPOOL, clone.thin_id))]
    assert snaps.drop_clone('node01', 'look') is True
    assert snaps.get('node01', 'look') is None
    with pytest.raises(ts.SnapshotError, match='not a clone'):
        snaps.drop_clone('node01', 'good')


def test_pool_usage_from_the_status_line(env):
    usage = env.open().pool_usage()
    assert usage['data_percent'] == pytest.approx(10.0)
    assert usage['metadata_percent'] == pytest.approx(1.0)
    assert usage['data_bytes'] == 1000 * 64 * 1024


def test_a_btrfs_pool_is_refused():
    with pytest.raises(ts.SnapshotError, match='LVM thin pool'):
        ts.ThinSnapshots('/srv/vdisks', None, dm=object())


# --- schedule ---------------------------------------------------------------

def test_retention_windows_keep_the_first_of_each_bucket():
    t0 = 1_800_000_000 - 1_800_000_000 % DAY  # a midnight UTC
    times = [t0 + m * MINUTE for m in range(0, 180)]  # three hours of 1-minute rounds
    now = times[-1]
    kept = sched.keep(times, {'minutely': 5, 'hourly': 2}, now)
    assert sorted(kept) == [t0 + HOUR, t0 + 2 * HOUR] + times[-5:]
    assert sched.keep(times, {'daily': 1}, now) == {t0}
    assert sched.keep(times, {'minutely': 0, 'hourly': 0, 'daily': 0, 'weekly': 0, 'monthly': 1}, now) == {t0}


def test_retention_ages_out_after_a_stall():
    kept = sched.keep([0.0, 60.0, 120.0], {'minutely': 3}, 10 * MINUTE)
    assert kept == set()  # a window, not "the last N whatever their age"


def test_weekly_buckets_start_on_monday():
    monday = 1_800_000_000 - (1_800_000_000 // DAY + 3) % 7 * DAY
    monday -= monday % DAY
    assert sched._bucket('weekly', monday) == sched._bucket('weekly', monday + 6 * DAY + 86399)
    assert sched._bucket('weekly', monday - 1) == sched._bucket('weekly', monday) - 1


@pytest.mark.parametrize('config, message', [
    ({'pool': '/srv/vdisks'}, 'LVM thin pool'),
    ({'pool': POOL, 'interval_minutes': 0}, 'divides an hour'),
    ({'pool': POOL, 'interval_minutes': 7}, 'divides an hour'),
    ({'pool': POOL, 'interval_minutes': 1.5}, 'divides an hour'),
    ({'pool': POOL, 'interval_minutes': '1'}, 'divides an hour'),
    ({'pool': POOL, 'interval_minutes': True}, 'divides an hour'),
    ({'pool': POOL, 'retention': {'minutely': 0}}, 'keeps nothing'),
    ({'pool': POOL, 'retention': {}}, 'keeps nothing'),
    ({'pool': POOL, 'retention': {'minutly': 5}}, 'unknown class minutly'),
    ({'pool': POOL, 'retention': {'hourly': -1}}, 'whole number'),
    ({'pool': POOL, 'retention': {'hourly': '5'}}, 'whole number'),
    ({'pool': POOL, 'retention': {'hourly': False}}, 'whole number'),
    ({'pool': POOL, 'reserve_percent': 2}, 'reserve_percent'),
    ({'pool': POOL, 'vdisks': {'bad/name': {}}}, 'invalid'),
    ({'pool': POOL, 'vdisks': {'node01\n': {}}}, 'invalid'),
    ({'pool': POOL, 'vdisks': {'node01': {'enabled': 'no'}}}, 'true or false'),
    ({'pool': POOL, 'vdisks': {'node01': {'retention': {'minutely': 0, 'hourly': 0, 'daily': 0, 'weekly': 0}}}},
     'keeps nothing'),
    ({'pool': POOL, 'intervall': 1}, 'unknown setting'),
    ({'pool': POOL, 'round_workers': 0}, 'round_workers must be a whole number from 1 to 32'),
    ({'pool': POOL, 'round_workers': 33}, 'round_workers'),
    ({'pool': POOL, 'round_workers': '4'}, 'round_workers'),
    ({'pool': POOL, 'round_workers': True}, 'round_workers'),
    ({'pool': POOL, 'round_workers': 2.5}, 'round_workers'),
])
def test_bad_configuration_is_refused(config, message):
    with pytest.raises(sched.ConfigError, match=message):
        sched.check_config(config)


def test_per_vdisk_retention_overrides_the_pool():
    config = sched.check_config({'pool': POOL, 'retention': {'minutely': 10, 'hourly': 5},
                                 'vdisks': {'db': {'retention': {'minutely': 2}}, 'tmp': {'enabled': False}}})
    assert config['vdisks']['db']['retention'] == {'minutely': 2, 'hourly': 5, 'daily': 0, 'weekly': 0,
                                                   'monthly': 0}
    assert config['vdisks']['tmp']['enabled'] is False


def _round(env, config, minutes, write=True):
    """``minutes`` rounds; with ``write``, every active vDisk is written before each (each round snapshots it)."""
    report = None
    for _minute in range(minutes):
        if write:
            for name in sorted(env.dm.active):
                env.dm.write(name, 'content at %d' % env.clock.now)
        snaps = env.open()
        report = sched.run_round(config, snaps, now=env.clock.now)
        env.clock.now += MINUTE
    return report


def test_rounds_snapshot_every_enabled_vdisk_and_prune(env):
    config = sched.check_config({'pool': POOL, 'retention': {'minutely': 3},
                                 'vdisks': {'node03': {'enabled': False}, 'node02': {'retention': {'minutely': 1}}}})
    env.open().create(['node01'], 'manual-one')
    report = _round(env, config, 10)
    assert report['result'] == 'ok' and report['vdisks'] == 2
    snaps = env.open()
    assert len(snaps.list('node01', kinds=('scheduled',))) == 3
    assert len(snaps.list('node02', kinds=('scheduled',))) == 1
    assert snaps.list('node03') == []
    assert snaps.get('node01', 'manual-one') is not None  # never pruned


def test_a_former_vdisks_scheduled_entries_age_out_by_its_names_retention(env):
    config = sched.check_config({'pool': POOL, 'retention': {'minutely': 2}, 'vdisks': {'node01': {'enabled': False}}})
    env.open().create(['node01'], 'manual-old')
    _round(env, config, 1)
    snaps = env.open()
    snaps.round_snapshots(['node01'], 'auto-old', share_unchanged=False)
    env.write_meta('node01', 'wwn-new')  # deleted and made again: those entries are orphans now
    _round(env, config, 3)
    snaps = env.open()
    assert [(s.name, s.kind) for s in snaps.orphans()] == [('manual-old', 'manual')]  # the scheduled one aged out
    assert snaps.list('node01') == []


def test_the_status_counts_match_the_entries(env):
    config = sched.check_config({'pool': POOL, 'retention': {'minutely': 3}})
    env.open().create(['node01'], 'manual-one')
    _round(env, config, 4)
    env.open().create(['node02'], 'manual-two')
    env.write_meta('node03', 'wwn-new')  # its entries are orphans: not counted for the new node03
    snaps = env.open()
    summary = sched.summarize(snaps, env.clock.now)
    assert summary['node01'] == {'count': 4, 'scheduled': 3, 'newest': snaps.list('node01')[-1].created}
    assert summary['node02']['count'] == 4 and summary['node02']['scheduled'] == 3
    assert summary['node03'] == {'count': 0, 'scheduled': 0, 'newest': None}
    for vdisk, entry in summary.items():  # as a walk over every Snapshot would count them
        listed = snaps.list(vdisk)
        scheduled = [s.created for s in listed if s.kind == 'scheduled']
        assert entry == {'count': len(listed), 'scheduled': len(scheduled), 'newest': max(scheduled, default=None)}


def test_a_round_reads_only_plain_rows_of_the_entries_it_keeps(env, monkeypatch):
    # Whatever a pool keeps (100 entries of each of 500 vDisks is 50,000), a round
    # makes Snapshot objects only of what it creates, prunes or finishes.
    config = sched.check_config({'pool': POOL, 'retention': {'minutely': 40}})
    _round(env, config, 40)
    made = []
    init = ts.Snapshot.__init__

    def counting(self, row):
        made.append(row['name'])
        init(self, row)

    monkeypatch.setattr(ts.Snapshot, '__init__', counting)
    report = _round(env, config, 1)
    assert report['created'] == 3 and report['pruned'] == 3
    assert len(made) == 6, made


def test_guard_prunes_oldest_scheduled_first_and_stops_snapshots(env):
    config = sched.check_config({'pool': POOL, 'retention': {'minutely': 100}, 'reserve_percent': 20})
    _round(env, config, 3)
    snaps = env.open()
    oldest = snaps.list(kinds=('scheduled',))[0]
    env.dm.used = 815  # 81.5 % used: over the 80 % line; each delete gives back 1 %
    result = sched.guard(snaps, 20)
    assert result['over'] is False
    assert result['pruned'][0] == '%s@%s' % (oldest.vdisk, oldest.name)
    env.dm.used = 990
    env.open().create(['node01'], 'manual-one')
    report = _round(env, config, 1)
    assert report['result'] == 'failed' and report['created'] == 0
    assert 'no snapshot taken' in report['errors'][0]
    assert env.open().get('node01', 'manual-one') is not None
    # The round's guard says what it did the way the guard's timer does.
    lines = sched.guard_lines(report['guard'], config)
    assert lines[-1].startswith('guard: pool %s still over its reserve (data ' % POOL)
    assert lines[-1].endswith('with no scheduled snapshot left')


def test_a_rounds_guard_logs_as_the_guard_timer_does(env):
    config = sched.check_config({'pool': POOL, 'retention': {'minutely': 100}, 'reserve_percent': 20})
    _round(env, config, 3)
    env.dm.used = 815
    report = _round(env, config, 1)
    assert len(report['guard_pruned']) == 8 and report['created'] == 3  # deleted in batches of 8
    line, = sched.guard_lines(report['guard'], config)
    assert line.startswith('guard: pool at 81.5% data, ')
    assert 'over its reserve line (80%): deleted 8 oldest scheduled snapshots, now 73.5%' in line
    assert sched.guard_lines({'pruned': [], 'over': False, 'usage': {}, 'before': {}}, config) == []


def test_status_and_check(env):
    config = sched.check_config({'pool': POOL, 'retention': {'minutely': 5}})
    assert sched.check(None, 0)[0] == 3
    snaps = env.open()
    report = sched.run_round(config, snaps, now=env.clock.now)
    status = sched.write_status(config, report, snaps, env.clock.now)
    assert status['rounds_total'] == 1 and status['rounds_failed_total'] == 0
    assert os.stat(sched.status_path(POOL)).st_mode & 0o777 == 0o644
    code, line = sched.check(sched.read_status(POOL), env.clock.now + 30)
    assert code == 0 and line.startswith('SNAPSHOTS OK - 3 vDisks') and '|' in line
    assert sched.check(status, env.clock.now + 250)[0] == 1
    code, line = sched.check(status, env.clock.now + 700)
    assert code == 2 and 'node01 newest snapshot 700 s old' in line
    status['last_round']['pool_usage']['data_percent'] = 85.0
    assert sched.check(status, env.clock.now + 30)[0] == 2
    status['last_round']['pool_usage']['data_percent'] = 77.0
    assert sched.check(status, env.clock.now + 30)[0] == 1


def test_prometheus_lines(env):
    config = sched.check_config({'pool': POOL, 'retention': {'minutely': 5}})
    snaps = env.open()
    status = sched.write_status(config, sched.run_round(config, snaps, now=env.clock.now), snaps, env.clock.now)
    text = '\n'.join(sched.prometheus(status, env.clock.now + 42))
    assert 'vdisk_snapshot_newest_age_seconds{vdisk="node01"} 42' in text
    assert 'vdisk_snapshot_count{vdisk="node02"} 1' in text
    assert 'vdisk_snapshot_rounds_failed_total 0' in text
    assert 'vdisk_snapshot_last_round_success 1' in text
    assert 'vdisk_snapshot_last_round_unchanged 0' in text
    assert 'vdisk_pool_data_free_percent{pool="%s"} 90.00' % POOL in text
    assert '# TYPE vdisk_snapshot_rounds_total counter' in text
    assert sched.prometheus(None, 0) == []


def test_a_vdisk_left_suspended_by_a_killed_run_is_resumed(env):
    snaps = env.open()

    def killed(*args, **kwargs):
        env.dm.suspended.add('vdisks-vdisk--node02')  # a SIGKILL between its suspend and its resume
        raise PowerCut()

    snaps._snap = killed
    with pytest.raises(PowerCut):
        snaps.create(['node02'], 'x')
    env.open().finish_interrupted()
    assert env.dm.suspended == set() and ('resume', 'vdisks-vdisk--node02') in env.dm.log


def test_a_vdisk_left_suspended_by_an_interrupted_rollback_is_resumed(env, monkeypatch):
    monkeypatch.setattr(ts.time, 'sleep', lambda s: None)
    snaps = env.open()
    snaps.create(['node01'], 'good')
    # The content before is kept (its resume passes); the first remap's resume never comes.
    env.dm.fail[('resume', NODE01)] = [0] + [errno.EIO] * 5
    with pytest.raises(devmapper.DeviceMapperError):
        snaps.rollback('node01', 'good', 'pre')
    assert NODE01 in env.dm.suspended and 'node01' in env.open().pending_rollbacks()
    env.open().finish_interrupted()
    assert env.dm.suspended == set()


def test_with_nothing_interrupted_no_vdisk_is_looked_at(env):
    # A run suspends a vDisk only while the catalog says so ('creating' entries, a
    # rollback): with neither, finish_interrupted asks nothing of each vDisk.
    env.open().create(['node01', 'node02'], 'x')
    asked = []
    real_info = env.dm.info

    def info(name):
        asked.append(name)
        return real_info(name)

    env.dm.info = info
    assert env.open().finish_interrupted() == ([], {})
    assert [n for n in asked if n != TPOOL] == []


# --- unchanged vDisks share their last snapshot ------------------------------

SHARE = {'pool': POOL, 'retention': {'minutely': 3}}
NODE01 = 'vdisks-vdisk--node01'


def _ids(snaps, vdisk):
    return [s.thin_id for s in snaps.list(vdisk, kinds=('scheduled',))]


def test_an_unwritten_vdisk_gets_an_entry_sharing_its_last_snapshot(env):
    config = sched.check_config(SHARE)
    first = _round(env, config, 1)
    assert first['created'] == 3 and first['unchanged'] == 0
    del env.dm.log[:]
    second = _round(env, config, 1, write=False)
    assert second['created'] == 3 and second['unchanged'] == 3 and second['result'] == 'ok'
    status = sched.write_status(config, second, env.open(), env.clock.now)
    assert 'vdisk_snapshot_last_round_unchanged 3' in sched.prometheus(status, env.clock.now)
    assert env.dm.log == []  # no suspend, no message: no pool commit
    snaps = env.open()
    for vdisk in ('node01', 'node02', 'node03'):
        a, b = snaps.list(vdisk, kinds=('scheduled',))
        assert a.thin_id == b.thin_id and a.name != b.name and b.state == 'ready'


def test_a_counted_write_makes_a_new_snapshot_of_that_vdisk_only(env):
    config = sched.check_config(SHARE)
    _round(env, config, 1)
    env.dm.write(NODE01, 'one 4k write')
    del env.dm.log[:]
    report = _round(env, config, 1, write=False)
    assert report['unchanged'] == 2
    assert [c for c, _a in env.dm.log] == ['suspend', 'message', 'resume']
    snaps = env.open()
    old, new = snaps.list('node01', kinds=('scheduled',))
    assert old.thin_id != new.thin_id and env.dm.devices[new.thin_id] == 'one 4k write'
    assert env.dm.devices[old.thin_id] != 'one 4k write'


@pytest.mark.parametrize('why', ['in flight', 'not counted', 'remade', 'new vdisk', 'rolled back', 'turned off',
                                 'write during suspend'])
def test_what_it_cannot_tell_unchanged_is_snapshotted(env, why):
    config = sched.check_config(dict(SHARE, share_unchanged=why != 'turned off'))
    if why == 'write during suspend':
        # A write after the marker was read, before the suspend: in the snapshot, but the next round must not trust it.
        real_suspend = env.dm.suspend

        def suspend(name):
            if name == NODE01:
                env.dm.write(name, 'written while suspending')
            real_suspend(name)
        env.dm.suspend = suspend
    _round(env, config, 1)
    env.dm.suspend = FakeThinPool.suspend.__get__(env.dm)
    if why == 'in flight':
        env.dm.in_flight[NODE01] = 1  # started, not yet counted as done
    elif why == 'not counted':
        env.dm.counting = False
    elif why == 'remade':  # deactivated, written elsewhere, made again: counts start again, as many writes
        counted = env.dm.writes[NODE01]
        env.dm.write(NODE01, 'x')
        env.dm.writes[NODE01], env.dm.diskseq[NODE01] = counted, 2
    elif why == 'new vdisk':
        env.write_meta('node01', 'wwn-another')
    elif why == 'rolled back':
        snaps = env.open()
        first = snaps.list('node01', kinds=('scheduled',))[0]
        env.dm.write(NODE01, 'later content')
        snaps.create(['node01'], 'manual')  # its marker: the content now
        snaps.rollback('node01', first.name, 'kept')  # back to the first: no counted write
        del env.dm.log[:]
    report = _round(env, config, 1, write=False)
    snaps = env.open()
    ids = _ids(snaps, 'node01')
    if why == 'new vdisk':  # the old entries are another disk's
        assert len(ids) == 1 and report['unchanged'] == 2
        return
    assert len(ids) == 2 and ids[0] != ids[1], why
    assert report['unchanged'] == (0 if why in ('turned off', 'not counted') else 2)
    if why == 'rolled back':
        assert env.dm.devices[ids[1]] == env.dm.content(NODE01) == env.dm.devices[ids[0]]


def test_a_thin_device_goes_with_the_last_entry_naming_it(env):
    config = sched.check_config(SHARE)
    _round(env, config, 1)
    shared_id = _ids(env.open(), 'node01')[0]
    _round(env, config, 5, write=False)  # minutely 3: the first two entries pruned, their device kept
    snaps = env.open()
    assert _ids(snaps, 'node01') == [shared_id] * 3
    assert shared_id in env.dm.devices
    assert not any(t == 'delete %d' % shared_id for _c, t in env.dm.log)
    env.dm.write(NODE01, 'new')
    _round(env, config, 3, write=False)  # the shared entries age out: the device with the last
    snaps = env.open()
    assert shared_id not in _ids(snaps, 'node01') and shared_id not in env.dm.devices
    assert ('message', 'delete %d' % shared_id) in env.dm.log
    assert env.open().audit() == {'unfinished': [], 'missing': [], 'leaked': [], 'suspended': []}


def test_a_manual_snapshot_deleted_leaves_the_rounds_entries_sharing_it(env):
    config = sched.check_config(SHARE)
    snaps = env.open()
    snaps.create(['node01'], 'manual')
    manual_id = snaps.get('node01', 'manual').thin_id
    _round(env, config, 1, write=False)
    snaps = env.open()
    assert _ids(snaps, 'node01') == [manual_id]
    done, failures = snaps.delete([snaps.get('node01', 'manual')])
    assert len(done) == 1 and failures == {} and manual_id in env.dm.devices
    assert _ids(env.open(), 'node01') == [manual_id]


def test_no_entry_shares_a_device_a_prune_is_deleting(env):
    config = sched.check_config(SHARE)
    _round(env, config, 1)
    snaps = env.open()
    old = snaps.list('node01', kinds=('scheduled',))[0]
    # A guard (no host lock) has marked every entry naming it and is about to delete it.
    snaps.db.execute("UPDATE snapshot SET state = 'deleting' WHERE thin_id = ?", (old.thin_id,))
    created, failures, unchanged = env.open().round_snapshots(['node01', 'node02'], 'auto-next')
    assert unchanged == ['node02'] and failures == {}
    assert created['node01'].thin_id != old.thin_id and created['node01'].state == 'ready'


def test_concurrent_prunes_of_entries_sharing_a_device_delete_it_once(env):
    config = sched.check_config(SHARE)
    _round(env, config, 1)
    _round(env, config, 1, write=False)
    a, b = env.open(), env.open()  # two processes: the round and the guard
    first, second = a.list('node01', kinds=('scheduled',))
    assert first.thin_id == second.thin_id
    a.delete([first])
    assert first.thin_id in env.dm.devices  # the other entry still names it
    b.delete([second])
    assert first.thin_id not in env.dm.devices and _ids(env.open(), 'node01') == []


def test_an_old_catalog_is_migrated_and_keeps_its_snapshots(env, tmp_path):
    import sqlite3
    path = tmp_path / 'old.sqlite'
    db = sqlite3.connect(str(path))
    db.executescript(ts.SNAPSHOT_TABLE.replace('thin_id INTEGER NOT NULL,', 'thin_id INTEGER NOT NULL UNIQUE,')
                     % 'snapshot')
    db.execute("INSERT INTO snapshot VALUES ('node01', 'old', %d, 'wwn-node01', 1, 1.0, 'manual', 'ready', NULL)"
               % ts.FIRST_ID)
    db.commit()
    db.close()
    env.dm.devices[ts.FIRST_ID] = 'old content'
    snaps = ts.ThinSnapshots(POOL, env.lvm, dm=env.dm, clock=env.clock, catalog=str(path),
                             write_marker=env.dm.write_marker)
    assert [s.name for s in snaps.list('node01')] == ['old']
    sql = snaps.db.execute("SELECT sql FROM sqlite_master WHERE name = 'snapshot'").fetchone()[0]
    assert 'UNIQUE' not in sql
    created, failures, unchanged = snaps.round_snapshots(['node01'], 'auto-1')
    created, failures, unchanged = snaps.round_snapshots(['node01'], 'auto-2')
    assert unchanged == ['node01'] and created['node01'].thin_id == snaps.get('node01', 'auto-1').thin_id


def _sysfs(tmp_path, iostats='1', reads=5, diskseq='42'):
    base = tmp_path / 'sys' / '253:7'
    (base / 'queue').mkdir(parents=True, exist_ok=True)
    (base / 'queue' / 'iostats').write_text(iostats + '\n')
    (base / 'inflight').write_text('       0        0\n')
    (base / 'stat').write_text('%d 0 40 1 9 0 72 3 0 4 4 2 0 16 1 6 1\n' % reads)
    if diskseq is not None:
        (base / 'diskseq').write_text(diskseq + '\n')
    (tmp_path / 'boot_id').write_text('b00t\n')
    return base


def test_write_marker_reads_the_kernels_counts(tmp_path, monkeypatch):
    base = _sysfs(tmp_path)

    def mark():
        return devmapper.write_marker(253, 7, '/dev/mapper/x', str(tmp_path / 'sys'), str(tmp_path / 'boot_id'))
    assert mark() == ('b00t 42 9 72 2 16', 0)
    (base / 'inflight').write_text('       0        3\n')
    assert mark() == ('b00t 42 9 72 2 16', 3)
    # iostats off: trusted only if a read of the device is counted anyway (Linux 6.1's device-mapper),
    # probed once per process and driver (major)
    probes = []

    def probe(node):
        probes.append(node)
        _sysfs(tmp_path, iostats='0', reads=6)
    monkeypatch.setattr(devmapper, '_COUNTS_WITHOUT_FLAG', {})
    _sysfs(tmp_path, iostats='0')
    monkeypatch.setattr(devmapper, '_probe', probe)
    assert mark() == ('b00t 42 9 72 2 16', 0)
    assert mark() == ('b00t 42 9 72 2 16', 0) and probes == ['/dev/mapper/x']
    monkeypatch.setattr(devmapper, '_COUNTS_WITHOUT_FLAG', {})
    _sysfs(tmp_path, iostats='0')
    monkeypatch.setattr(devmapper, '_probe', lambda node: None)
    assert mark() is None
    assert mark() is None
    _sysfs(tmp_path, diskseq=None)
    (base / 'diskseq').unlink()
    assert mark() is None
    assert devmapper.write_marker(253, 8, '/dev/mapper/x', str(tmp_path / 'sys'), str(tmp_path / 'boot_id')) is None


def test_ids_are_chosen_and_taken_in_one_transaction(env, monkeypatch):
    """A clone choosing an id while a round chooses its own waits, then takes another (entries may share ids, so
    no UNIQUE constraint catches a collision any more)."""
    import sqlite3
    env.dm.create = lambda *args, **kwargs: None
    round_, other = env.open(), env.open()
    other.db.execute('PRAGMA busy_timeout = 50')
    blocked = []
    choose = round_._free_ids

    def free_ids(count, avoid=()):
        ids = choose(count, avoid)
        try:  # another process, right now
            other.clone('node01', 'first', 'look')
        except sqlite3.OperationalError as exc:
            blocked.append(str(exc))
        return ids
    round_.create(['node01'], 'first')
    monkeypatch.setattr(round_, '_free_ids', free_ids)
    created, failures = round_.create(['node02'], 'second')
    assert failures == {} and blocked and 'locked' in blocked[0]
    clone_path = other.clone('node01', 'first', 'look')  # after the round: another id
    clone = other.get('node01', 'look')
    assert clone.thin_id != created['node02'].thin_id and clone_path.endswith(str(clone.thin_id))


def test_a_changed_vdisks_marker_is_read_once_per_round(env, monkeypatch):
    config = sched.check_config(SHARE)
    reads = []
    real = env.dm.write_marker

    def counting(major, minor, node):
        reads.append(node)
        return real(major, minor, node)

    env.dm.write_marker = counting
    _round(env, config, 1)  # no marker known yet: each read once, before its suspend
    assert sorted(reads) == ['/dev/mapper/vdisks-vdisk--node0%d' % i for i in (1, 2, 3)]
    del reads[:]
    report = _round(env, config, 1)  # every vDisk written: read once to compare, that read kept for the snapshot
    assert report['created'] == 3 and report['unchanged'] == 0
    assert sorted(reads) == ['/dev/mapper/vdisks-vdisk--node0%d' % i for i in (1, 2, 3)]
    report = _round(env, config, 1, write=False)  # the kept markers are right: all unchanged now
    assert report['unchanged'] == 3


def test_get_many_finds_entries_in_order_across_query_chunks(env, monkeypatch):
    monkeypatch.setattr(ts, 'QUERY_CHUNK', 2)
    snaps = env.open()
    for name in ('a', 'b'):
        snaps.create(['node01', 'node02', 'node03'], name)
    keys = [('node03', 'b'), ('node01', 'a'), ('node02', 'missing'), ('node02', 'b'), ('node01', 'b')]
    assert [(s.vdisk, s.name) for s in snaps.get_many(keys)] == [k for k in keys if k[1] != 'missing']
    assert snaps.get_many([]) == []


def test_delete_across_query_chunks_keeps_devices_other_entries_name(env, monkeypatch):
    monkeypatch.setattr(ts, 'QUERY_CHUNK', 2)
    config = sched.check_config(SHARE)
    _round(env, config, 1)
    _round(env, config, 1, write=False)  # a second entry for each vDisk, sharing the first's device
    snaps = env.open()
    firsts = [snaps.list(v, kinds=('scheduled',))[0] for v in ('node01', 'node02', 'node03')]
    done, failures = snaps.delete(firsts)
    assert len(done) == 3 and failures == {}
    assert all(s.thin_id in env.dm.devices for s in firsts)  # still named by the second entries
    seconds = [env.open().list(v, kinds=('scheduled',))[0] for v in ('node01', 'node02', 'node03')]
    env.open().delete(seconds)
    assert not any(s.thin_id in env.dm.devices for s in firsts)


# --- the prune comes before the snapshots' suspends ---------------------------

def test_a_round_prunes_before_it_suspends_any_vdisk(env):
    config = sched.check_config({'pool': POOL, 'retention': {'minutely': 1}})
    _round(env, config, 1)
    del env.dm.log[:]
    report = _round(env, config, 1)  # every vDisk written: 3 snapshots, the 3 before them pruned
    assert report['created'] == 3 and report['pruned'] == 3 and report['result'] == 'ok'
    calls = [c if c != 'message' else t.split()[0] for c, t in env.dm.log]
    assert calls.count('delete') == 3 and calls.count('suspend') == 3
    assert max(i for i, c in enumerate(calls) if c == 'delete') < min(i for i, c in enumerate(calls) if c == 'suspend')
    assert report['prune_seconds'] >= 0 and report['snapshot_seconds'] >= 0


def test_with_one_minute_kept_unchanged_vdisks_still_share_their_snapshot(env):
    # The previous entry expires in this round, but the new entry naming its device is made first.
    config = sched.check_config({'pool': POOL, 'retention': {'minutely': 1}})
    _round(env, config, 1)
    ids = dict((v, _ids(env.open(), v)) for v in ('node01', 'node02', 'node03'))
    env.dm.write(NODE01, 'new')
    del env.dm.log[:]
    report = _round(env, config, 1, write=False)
    assert report['unchanged'] == 2 and report['created'] == 3 and report['pruned'] == 3
    assert [c for c, _t in env.dm.log if c != 'message'] == ['suspend', 'resume']  # node01 only
    assert [t for _c, t in env.dm.log if t.startswith('delete')] == ['delete %d' % ids['node01'][0]]
    snaps = env.open()
    for vdisk in ('node02', 'node03'):
        assert _ids(snaps, vdisk) == ids[vdisk] and ids[vdisk][0] in env.dm.devices
    assert _ids(snaps, 'node01') != ids['node01']
    assert snaps.audit() == {'unfinished': [], 'missing': [], 'leaked': [], 'suspended': []}


def test_a_second_round_in_the_same_minute_prunes_its_own_entries(env):
    config = sched.check_config({'pool': POOL, 'retention': {'minutely': 3}})
    _round(env, config, 2)
    first = dict((v, _ids(env.open(), v)) for v in ('node01', 'node02', 'node03'))
    env.clock.now -= 30  # half a minute after the last round
    env.dm.write(NODE01, 'written since')
    report = _round(env, config, 1)
    assert report['created'] == 3 and report['pruned'] == 3 and report['result'] == 'ok'
    snaps = env.open()
    for vdisk in ('node01', 'node02', 'node03'):  # the minute's first entry stays, the new one is gone
        assert _ids(snaps, vdisk) == first[vdisk]
    assert snaps.audit() == {'unfinished': [], 'missing': [], 'leaked': [], 'suspended': []}


@pytest.mark.parametrize('write', [True, False])
def test_a_round_reads_the_entries_once(env, monkeypatch, write):
    config = sched.check_config(SHARE)
    _round(env, config, 2)
    calls = []
    real = ts.ThinSnapshots.scheduled_entries

    def counting(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(ts.ThinSnapshots, 'scheduled_entries', counting)
    report = _round(env, config, 1, write=write)
    assert report['unchanged'] == (0 if write else 3) and len(calls) == 1
