# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Planning vDisks: what a run would do, and what it refuses."""

from __future__ import annotations

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils.pool import BtrfsPool, LvmThinPool, PoolError, VdiskRecord
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import ValidationError
from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio_backstore, vdisk_resource

G = 1 << 30
BTRFS = BtrfsPool('/srv/vdisks', run=None)
THIN = LvmThinPool('lvm-thin:vdisks/pool', run=None)


def params(**over):
    p = {'pool': '/srv/vdisks', 'name': None, 'size': None, 'filesystem': None, 'partitions': None,
         'state': 'present', 'force': False, 'vdisks': None, 'purge': False}
    p.update(over)
    return p


def item(**over):
    return vdisk_resource.requested(params(**dict({'name': 'node01'}, **over)))[0]


class SO:
    def __init__(self, record, **over):
        self.udev_path, self.size, self.write_back, self.aio = record.backing, record.size_bytes, False, False
        self.plugin, self.name = record.backstore, record.name
        self.attributes = dict(lio_backstore.BLOCK_ATTRIBUTES)
        self.sessions = []
        self.__dict__.update(over)

    def get_attribute(self, name):
        return self.attributes[name]


@pytest.fixture(autouse=True)
def sessions_of_the_fake(monkeypatch):
    monkeypatch.setattr(lio_backstore, 'active_sessions', lambda so: so.sessions)


def record(size=G, filesystem='xfs', partitions=()):
    return VdiskRecord('node01', '/srv/vdisks/node01/disk.img', size, 'wwn-1', filesystem, list(partitions))


def test_items_take_module_defaults():
    items = vdisk_resource.requested(params(state='absent', force=True, vdisks=[
        {'name': 'a'}, {'name': 'b', 'state': 'present', 'force': False, 'size': '1G'}]))
    assert [(i['name'], i['state'], i['force']) for i in items] == [('a', 'absent', True), ('b', 'present', False)]
    assert items[1]['size_bytes'] == G


@pytest.mark.parametrize('vdisks,message', [
    ([{'name': 'a'}, {'name': 'a'}], 'listed twice'),
    ([{'name': 'a', 'colour': 'red'}], 'unknown keys colour'),
    ([{'name': 'a/b'}], 'no "/"'),
    (['a'], 'not a dictionary'),
    ([{'name': 'a', 'size': '-1G'}], 'size'),
])
def test_items_rejected(vdisks, message):
    with pytest.raises(ValidationError, match=message):
        vdisk_resource.requested(params(vdisks=vdisks))


def test_plan_create_needs_a_size():
    with pytest.raises(ValidationError, match='size is required'):
        vdisk_resource._plan_present(item(), None, None, BTRFS)
    spec = item(size='1G')
    assert vdisk_resource._plan_present(spec, None, None, BTRFS) == ['created', 'exported']
    assert spec['filesystem_final'] == 'xfs'


def test_plan_partitions_default_to_no_whole_disk_filesystem():
    spec = item(size='2G', partitions=[{'size': '1G', 'filesystem': 'ext4'}, {'size': None}])
    vdisk_resource._plan_present(spec, None, None, BTRFS)
    assert spec['filesystem_final'] == 'none'
    assert [p['filesystem'] for p in spec['layout']] == ['ext4', 'xfs']


def test_plan_nothing_to_do():
    r = record()
    assert vdisk_resource._plan_present(item(size='1G'), r, SO(r), BTRFS) == []
    assert vdisk_resource._plan_present(item(), r, SO(r), BTRFS) == []


def test_plan_grow_reexports_and_shrink_is_refused():
    r = record()
    assert vdisk_resource._plan_present(item(size='2G'), r, SO(r), BTRFS) == ['grown', 'reexported']
    with pytest.raises(ValidationError, match='shrinking it to 512M is refused'):
        vdisk_resource._plan_present(item(size='512M'), r, SO(r), BTRFS)


@pytest.mark.parametrize('size,over,why', [
    ('2G', {}, 'a fileio backstore does not grow in place'),
    (None, {'write_back': True}, 'write-back cache on'),
])
def test_a_recreate_under_a_logged_in_initiator_is_refused_unless_forced(size, over, why):
    # The initiator would see LIO's 32 KiB write-protected LUN 0 until it rescans.
    r = record()
    so = SO(r, plugin='fileio', sessions=['iqn.2026-11.io.x:node01'], **over)
    with pytest.raises(ValidationError, match='in use by iqn.2026-11.io.x:node01: LIO must re-create its '
                                              'backstore \\(%s' % why):
        vdisk_resource._plan_present(item(size=size), r, so, BTRFS)
    assert vdisk_resource._plan_present(item(size=size, force=True), r, so, BTRFS)[-1] == 'reexported'


def test_plan_converges_a_drifted_backstore():
    r = record()
    assert vdisk_resource._plan_present(item(), r, SO(r, write_back=True), BTRFS) == ['reexported']
    assert vdisk_resource._plan_present(item(), r, SO(r, size=G // 2), BTRFS) == ['reexported']
    assert vdisk_resource._plan_present(item(), r, SO(r, aio=True), BTRFS) == ['reexported']
    assert vdisk_resource._plan_present(item(), r, None, BTRFS) == ['exported']


def test_plan_never_reformats_or_repartitions():
    with pytest.raises(ValidationError, match='never reformatted'):
        vdisk_resource._plan_present(item(filesystem='ext4'), record(), None, BTRFS)
    parted = record(2 * G, 'none', [{'number': 1, 'size_bytes': G, 'filesystem': 'xfs'},
                                    {'number': 2, 'size_bytes': G - (2 << 20), 'filesystem': 'xfs'}])
    same = [{'size': '1G', 'filesystem': 'xfs'}, {'size': None, 'filesystem': 'xfs'}]
    assert vdisk_resource._plan_present(item(partitions=same), parted, SO(parted), BTRFS) == []
    with pytest.raises(ValidationError, match='never changed'):
        other = [{'size': '1500M', 'filesystem': 'xfs'}, {'size': None, 'filesystem': 'xfs'}]
        vdisk_resource._plan_present(item(partitions=other), parted, SO(parted), BTRFS)


# Plans over a pool and LIO held in memory; resource_run applies them.

from ansible_collections.clusterducks.vdisk.plugins.module_utils import resource_run  # noqa: E402


class MemoryPool(BtrfsPool):
    path = spec = '/srv/vdisks'
    full = False

    def __init__(self, *records, fail_create=None):
        self.records = dict((r.name, r) for r in records)
        self.fail_create = fail_create
        self.snapshots = {}

    def snapshots_of(self, name):
        return self.snapshots.get(name, [])

    def round_size(self, size_bytes):
        return size_bytes

    def check_room(self, name, size_bytes):
        if self.full:
            raise PoolError('thin pool is 95.0%% full (data): refusing to create or grow vDisk %s' % name)

    def get(self, name):
        return self.records.get(name)

    def list(self):
        return [self.records[n] for n in sorted(self.records)]

    def create(self, name, size_bytes, filesystem, partitions, wwn=None, created=None, fill=None, write_through=False):
        if name == self.fail_create:
            raise OSError('mkfs failed')
        r = VdiskRecord(name, '/srv/vdisks/%s/disk.img' % name, size_bytes, 'wwn-' + name, filesystem, partitions)
        self.records[name] = r
        return r

    def set_write_through(self, record, write_through):
        self.cache_changes = getattr(self, 'cache_changes', []) + [(record.name, write_through)]
        record.write_through, record.backstore = write_through, self.backstore_for(write_through)
        return record

    def grow(self, record, size_bytes):
        record.size_bytes = size_bytes

    def undo_grow(self, record, old_size):
        record.size_bytes = old_size

    def delete(self, record):
        del self.records[record.name]


@pytest.fixture
def backstores(monkeypatch):
    live = {}
    monkeypatch.setattr(lio_backstore, 'create', lambda r: live.setdefault(r.name, SO(r)))
    monkeypatch.setattr(lio_backstore, 'delete', lambda so: live.pop([k for k, v in live.items() if v is so][0]))

    def recreate(so, r, between=None):
        del live[r.name]
        if between is not None:
            between()
        live[r.name] = SO(r)
        return live[r.name]

    monkeypatch.setattr(lio_backstore, 'recreate', recreate)
    monkeypatch.setattr(lio_backstore, 'active_sessions', lambda so: so.sessions)
    return live


def named(name, size=G):
    return VdiskRecord(name, '/srv/vdisks/%s/disk.img' % name, size, 'wwn-' + name, 'xfs', [])


def run(pool, live, vdisks, exports=None, dry_run=False, **kw):
    items = vdisk_resource.requested(params(vdisks=vdisks))
    steps, unlisted = vdisk_resource.plan(pool, items, exports or {}, live.get, **kw)
    saves = []
    if not dry_run:
        resource_run.apply([s.step() for s in vdisk_resource.apply_order(steps) if s.actions],
                           lambda: saves.append(1) or '/etc/rtslib-fb-target/saveconfig.json', 'the save file')
    return steps, unlisted, saves


def keyed(steps):
    return [(s.key, s.actions, s.before, s.after) for s in steps]


def test_force_no_as_a_string_never_deletes():
    # The module's suboptions turn "no" into False; the engine refuses anything else.
    with pytest.raises(ValidationError, match='force must be a boolean'):
        vdisk_resource.requested(params(vdisks=[{'name': 'a', 'state': 'absent', 'force': 'no'}]))


def test_a_failed_run_undoes_what_it_created_and_saves(backstores):
    pool = MemoryPool(named('old'), fail_create='bad')
    backstores['old'] = SO(pool.get('old'))
    with pytest.raises(resource_run.ChangeFailed) as failed:
        run(pool, backstores, [{'name': 'new', 'size': '1G'}, {'name': 'old', 'state': 'absent', 'force': True},
                               {'name': 'bad', 'size': '1G'}])
    # 'new' was created and is gone again; 'old' (a deletion, ordered last) was never touched.
    assert sorted(pool.records) == ['old'] and sorted(backstores) == ['old']
    assert 'Put back as before this run: vDisk bad, vDisk new.' in str(failed.value)
    assert 'LIO and its save file are as before this run' in str(failed.value)


def test_a_grow_is_kept_when_a_later_step_fails(backstores):
    pool = MemoryPool(named('a'), fail_create='bad')
    backstores['a'] = SO(pool.get('a'))
    with pytest.raises(resource_run.ChangeFailed) as failed:
        run(pool, backstores, [{'name': 'a', 'size': '2G'}, {'name': 'bad', 'size': '1G'}])
    assert pool.get('a').size_bytes == 2 * G
    assert 'Kept: vDisk a (grown to 2G; shrinking back could lose data' in str(failed.value)
    assert 'running configuration was saved to' in str(failed.value)


def test_check_mode_changes_nothing_and_plans_the_same(backstores):
    pool = MemoryPool(named('a'))
    backstores['a'] = SO(pool.get('a'))
    vdisks = [{'name': 'a', 'size': '2G'}, {'name': 'b', 'size': '1G'}]
    dry, _unlisted, saves = run(pool, backstores, vdisks, dry_run=True)
    assert saves == [] and sorted(pool.records) == ['a'] and pool.get('a').size_bytes == G
    real, _unlisted, saves = run(pool, backstores, vdisks)
    assert [s.actions for s in dry] == [s.actions for s in real] and saves == [1]
    again, _unlisted, saves = run(pool, backstores, vdisks)
    assert [s.actions for s in again] == [[], []] and saves == []


def test_purge_reports_unlisted_and_deletes_only_with_force(backstores):
    pool = MemoryPool(named('keep'), named('stray'))
    for r in pool.list():
        backstores[r.name] = SO(r)
    steps, unlisted, _saves = run(pool, backstores, [{'name': 'keep'}], purge=True)
    assert unlisted == ['stray'] and 'stray' in pool.records
    steps, unlisted, _saves = run(pool, backstores, [{'name': 'keep'}], purge=False)
    assert unlisted == []
    steps, unlisted, _saves = run(pool, backstores, [{'name': 'keep'}], purge=True, purge_force=True)
    assert unlisted == [] and sorted(pool.records) == ['keep'] and [s.actions for s in steps] == [[], ['deleted']]


def test_before_and_after_are_always_there(backstores):
    pool = MemoryPool(named('a'))
    backstores['a'] = SO(pool.get('a'))
    steps, _unlisted, _saves = run(pool, backstores, [{'name': 'a', 'size': '2G'}], dry_run=True)
    out = resource_run.result(keyed(steps), diff=False)
    assert out['before']['a']['size_bytes'] == G and out['after']['a']['size_bytes'] == 2 * G
    assert 'diff' not in out and 'diff' in resource_run.result(keyed(steps), diff=True)


def test_round_trip_property_applied_plans_read_back_as_nothing_to_do(backstores):
    # Seeded random runs: whatever a plan does, planning the same list again
    # finds nothing to do, and check mode planned exactly what the run did.
    import random
    rng = random.Random(9)
    for case in range(200):
        pool = MemoryPool()
        backstores.clear()
        for name in rng.sample(['a', 'b', 'c', 'd'], rng.randint(0, 3)):
            pool.create(name, rng.choice([1, 2]) * G, 'xfs', [])
            if rng.random() < 0.7:  # some exist without a backstore (drift)
                backstores[name] = SO(pool.get(name))
        vdisks = []
        for name in rng.sample(['a', 'b', 'c', 'd', 'e'], rng.randint(1, 5)):
            record = pool.get(name)
            if rng.random() < 0.3:
                vdisks.append({'name': name, 'state': 'absent', 'force': True})
            else:
                floor = record.size_bytes if record else G
                vdisks.append({'name': name, 'size': '%dM' % ((floor >> 20) + rng.choice([0, 0, 512]))})
        planned, _unlisted, _saves = run(pool, backstores, vdisks, dry_run=True)
        done, _unlisted, _saves = run(pool, backstores, vdisks)
        again, _unlisted, saves = run(pool, backstores, vdisks)
        assert [s.actions for s in planned] == [s.actions for s in done], case
        assert all(s.actions == [] for s in again) and saves == [], case
        for item in vdisks:
            present = item.get('state') != 'absent'
            assert (item['name'] in pool.records, item['name'] in backstores) == (present, present), case
            if present:
                assert pool.get(item['name']).size_bytes == int(item['size'][:-1]) << 20, case


# The LVM thin path (block backstores) and moves between pools.

def block(name, size=G):
    return VdiskRecord(name, '/dev/vdisks/vdisk-' + name, size, 'wwn-' + name, 'xfs', [], backstore='block')


class ThinPool(MemoryPool):
    spec = 'lvm-thin:vdisks/pool'
    backstore = 'block'
    write_through_choice = True
    backstore_for = LvmThinPool.backstore_for

    def create(self, name, size_bytes, filesystem, partitions, wwn=None, created=None, fill=None, write_through=False):
        if name == self.fail_create:
            raise OSError('mkfs failed')
        if fill is not None:
            fill('/dev/vdisks/vdisk-' + name)
        r = VdiskRecord(name, '/dev/vdisks/vdisk-' + name, size_bytes, wwn or 'wwn-' + name, filesystem, partitions,
                        created, self.backstore_for(write_through), write_through)
        self.records[name] = r
        return r

    def round_size(self, size_bytes):
        return -(-size_bytes // (4 << 20)) * (4 << 20)

    def copy_in(self, source, target):
        self.copied = (source, target)


def test_a_block_vdisk_grows_without_recreating_its_backstore():
    r = block('node01')
    assert vdisk_resource._plan_present(item(size='2G'), r, SO(r), BTRFS) == ['grown']
    assert vdisk_resource._plan_present(item(), r, SO(r, attributes={'emulate_tpu': '0', 'emulate_tpws': '1'}), BTRFS) \
        == ['tuned']
    assert vdisk_resource._plan_present(item(), r, SO(r, plugin='fileio'), BTRFS) == ['reexported']


def test_sizes_are_planned_as_the_pool_rounds_them(backstores):
    pool = ThinPool()
    steps, _u, _s = run(pool, backstores, [{'name': 'a', 'size': '513M'}])
    assert steps[0].after['size_bytes'] == 516 << 20 and pool.get('a').size_bytes == 516 << 20
    again, _u, saves = run(pool, backstores, [{'name': 'a', 'size': '513M'}])
    assert again[0].actions == [] and saves == []


def test_a_pool_without_room_refuses_before_anything_changes(backstores):
    pool = ThinPool(block('a'))
    backstores['a'] = SO(pool.get('a'))
    pool.full = True
    with pytest.raises(PoolError, match='refusing to create or grow vDisk a'):
        run(pool, backstores, [{'name': 'a', 'size': '2G'}, {'name': 'b', 'size': '1G'}])
    assert pool.get('a').size_bytes == G and 'b' not in pool.records
    steps, _u, _s = run(pool, backstores, [{'name': 'a', 'size': '1G'}])  # nothing to do: allowed
    assert steps[0].actions == []


def test_another_pools_vdisk_of_the_same_name_is_never_taken_over_and_its_copy_deletes_alone(backstores):
    old, new = MemoryPool(named('a')), ThinPool(block('a'))
    backstores['a'] = SO(new.get('a'))  # moved: the backstore exports the thin volume
    with pytest.raises(ValidationError, match='exports /dev/vdisks/vdisk-a, not the vDisk in /srv/vdisks'):
        run(old, backstores, [{'name': 'a', 'size': '1G'}])
    exports = {'a': [{'target': 'iqn.x', 'tpg': 1, 'lun': 0}]}
    steps, _u, _s = run(old, backstores, [{'name': 'a', 'state': 'absent'}], exports=exports)
    assert steps[0].actions == ['deleted'] and 'a' not in old.records  # no force needed: not exported
    assert backstores['a'].udev_path == '/dev/vdisks/vdisk-a'


def migrate(old, new, live, vdisks, **kw):
    return run(new, live, vdisks, open_pool=lambda spec: old, **kw)


def test_migration_moves_data_wwn_and_backstore_and_keeps_the_old_copy(backstores):
    old, new = MemoryPool(named('a'), named('b', 513 << 20)), ThinPool()
    for r in old.list():
        backstores[r.name] = SO(r)
    vdisks = [{'name': 'a', 'migrate_from': '/srv/vdisks'}, {'name': 'b', 'migrate_from': '/srv/vdisks'},
              {'name': 'c', 'size': '1G', 'migrate_from': '/srv/vdisks'}]
    planned, _u, _s = migrate(old, new, backstores, vdisks, dry_run=True)
    assert [s.actions for s in planned] == [['migrated'], ['migrated'], ['created', 'exported']]
    assert planned[0].before is None  # not in the new pool yet
    assert planned[0].after['backstore'] == 'block' and planned[0].after['wwn'] == 'wwn-a'
    assert planned[1].after['size_bytes'] == 516 << 20  # rounded up to the extent size
    done, _u, saves = migrate(old, new, backstores, vdisks)
    assert [s.actions for s in done] == [s.actions for s in planned] and saves == [1]
    assert (new.get('a').wwn, new.get('a').backstore, backstores['a'].plugin) == ('wwn-a', 'block', 'block')
    assert new.copied == ('/srv/vdisks/b/disk.img', '/dev/vdisks/vdisk-b')
    assert sorted(old.records) == ['a', 'b']  # the old copies are kept
    again, _u, saves = migrate(old, new, backstores, vdisks)
    assert all(s.actions == [] for s in again) and saves == []


def test_migration_is_refused_while_a_device_is_logged_in_or_asked_to_shrink(backstores):
    old, new = MemoryPool(named('a')), ThinPool()
    backstores['a'] = SO(old.get('a'), sessions=['iqn.2026-11.io.clusterducks:device.node01'])
    with pytest.raises(ValidationError, match='in use by iqn.2026-11.io.clusterducks:device.node01'):
        migrate(old, new, backstores, [{'name': 'a', 'migrate_from': '/srv/vdisks'}])
    backstores['a'].sessions = []
    with pytest.raises(ValidationError, match='shrinking it to 512M is refused'):
        migrate(old, new, backstores, [{'name': 'a', 'size': '512M', 'migrate_from': '/srv/vdisks'}])
    steps, _u, _s = migrate(old, new, backstores, [{'name': 'a', 'size': '2G', 'migrate_from': '/srv/vdisks'}],
                            dry_run=True)
    assert steps[0].actions == ['migrated', 'grown'] and steps[0].after['size_bytes'] == 2 * G
    assert new.records == {} and backstores['a'].plugin == 'fileio'


def test_a_vdisk_with_snapshots_is_deleted_only_with_force(backstores):
    pool = MemoryPool(named('snapped'))
    pool.snapshots['snapped'] = [type('Snap', (), {'name': 'auto-20261127T020000Z'})()]
    with pytest.raises(ValidationError, match='has 1 snapshots .*auto-20261127T020000Z.*force=true'):
        run(pool, backstores, [{'name': 'snapped', 'state': 'absent'}])
    assert 'snapped' in pool.records
    steps, _unlisted, _saves = run(pool, backstores, [{'name': 'snapped', 'state': 'absent', 'force': True}])
    assert [s.actions for s in steps] == [['deleted']] and 'snapped' not in pool.records


def test_write_through_no_as_a_string_is_refused():
    with pytest.raises(ValidationError, match='write_through must be a boolean'):
        vdisk_resource.requested(params(vdisks=[{'name': 'a', 'write_through': 'no'}]))


def test_a_btrfs_pool_has_no_write_back_to_ask_for(backstores):
    pool = MemoryPool(named('a'))
    backstores['a'] = SO(pool.get('a'))
    with pytest.raises(ValidationError, match='write_through=false needs an LVM thin pool'):
        run(pool, backstores, [{'name': 'a', 'write_through': False}])
    with pytest.raises(ValidationError, match='write_through=false needs an LVM thin pool'):
        run(pool, backstores, [{'name': 'b', 'size': '1G', 'write_through': False}])
    assert sorted(pool.records) == ['a'] and backstores['a'].plugin == 'fileio'
    # It is write-through already: asking for it is nothing to do.
    steps, _u, saves = run(pool, backstores, [{'name': 'a', 'write_through': True}])
    assert steps[0].actions == [] and saves == [] and steps[0].after['write_through'] is True


def test_a_new_thin_vdisk_is_write_back_unless_asked(backstores):
    pool = ThinPool()
    steps, _u, _s = run(pool, backstores, [{'name': 'a', 'size': '1G'},
                                           {'name': 'b', 'size': '1G', 'write_through': True}])
    assert [(s.after['backstore'], s.after['write_through']) for s in steps] == [('block', False), ('fileio', True)]
    assert (backstores['a'].plugin, backstores['b'].plugin) == ('block', 'fileio')
    assert backstores['b'].udev_path == '/dev/vdisks/vdisk-b'
    again, _u, saves = run(pool, backstores, [{'name': 'a'}, {'name': 'b'}])
    assert [s.actions for s in again] == [[], []] and saves == []


def test_changing_the_cache_mode_recreates_the_backstore_only_with_no_session_or_force(backstores):
    pool = ThinPool(block('a'))
    backstores['a'] = SO(pool.get('a'), sessions=['iqn.2026-11.io.clusterducks:device.node01'])
    with pytest.raises(ValidationError, match='LIO must re-create its backstore .a block backstore instead of fileio'):
        run(pool, backstores, [{'name': 'a', 'write_through': True}])
    assert pool.get('a').write_through is False and not getattr(pool, 'cache_changes', [])
    steps, _u, _s = run(pool, backstores, [{'name': 'a', 'write_through': True, 'force': True}], dry_run=True)
    # Check mode plans what a run does, and changes nothing.
    assert steps[0].actions == ['cache_changed', 'reexported'] and backstores['a'].plugin == 'block'
    assert (steps[0].before['write_through'], steps[0].after['write_through']) == (False, True)
    steps, _u, saves = run(pool, backstores, [{'name': 'a', 'write_through': True, 'force': True}])
    assert steps[0].actions == ['cache_changed', 'reexported'] and saves == [1]
    assert (pool.get('a').backstore, backstores['a'].plugin) == ('fileio', 'fileio')
    again, _u, saves = run(pool, backstores, [{'name': 'a', 'write_through': True}])
    assert again[0].actions == [] and saves == []
    # A write-through thin vDisk grows in place: LIO reads its device's size.
    grown, _u, _s = run(pool, backstores, [{'name': 'a', 'size': '2G'}])
    assert grown[0].actions == ['grown']


def test_a_failed_backstore_swap_puts_the_cache_mode_back(backstores, monkeypatch):
    pool = ThinPool(block('a'))
    backstores['a'] = SO(pool.get('a'))

    def recreate(so, r, between=None):
        raise OSError('configfs said no')  # lio_backstore.recreate put the old object back itself

    monkeypatch.setattr(lio_backstore, 'recreate', recreate)
    with pytest.raises(resource_run.ChangeFailed):
        run(pool, backstores, [{'name': 'a', 'write_through': True}])
    assert (pool.get('a').write_through, pool.get('a').backstore) == (False, 'block')
    assert pool.cache_changes == [('a', True), ('a', False)]


def test_a_cache_change_is_taken_back_when_a_later_step_fails(backstores):
    pool = ThinPool(block('a'), fail_create='bad')
    backstores['a'] = SO(pool.get('a'))
    with pytest.raises(resource_run.ChangeFailed) as failed:
        run(pool, backstores, [{'name': 'a', 'write_through': True}, {'name': 'bad', 'size': '1G'}])
    assert (pool.get('a').write_through, backstores['a'].plugin) == (False, 'block')
    assert 'vDisk a' in str(failed.value)
