# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The LVM thin backend's logic against a scripted LVM: what it runs, what it refuses.

The real thing (lvcreate, mkfs on a thin volume, LIO block backstores,
power-cuts, growing under load) is the storage_host lab scenario.
"""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import pool as pool_mod
from ansible_collections.clusterducks.vdisk.plugins.module_utils import pool_layout
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import ValidationError

G = 1 << 30
M = 1 << 20
EXTENT = 4 * M


class ScriptedLvm:
    """lvs/vgs/lvcreate/lvextend/lvremove over an in-memory volume group; every other command succeeds."""

    def __init__(self, data_percent='10.00', metadata_percent='5.00', vg='vdisks'):
        self.vg = vg
        self.lvs = {'pool': {'lv_attr': 'twi-aotz--', 'lv_size': str(20 * G), 'data_percent': data_percent,
                             'metadata_percent': metadata_percent, 'pool_lv': '', 'vg_extent_size': str(EXTENT)}}
        self.calls = []
        self.fail = None

    def __call__(self, argv):
        self.calls.append(argv)
        if self.fail and argv[0] == self.fail:
            return 5, '', '%s: injected failure' % argv[0]
        if argv[0] == 'vgs':
            return (0, '  %s\n' % self.vg, '') if argv[-1] == self.vg else (5, '', 'Volume group "%s" not found' % argv[-1])
        if argv[0] == 'lvs':
            lv = [dict(v, lv_name=k) for k, v in self.lvs.items()]
            return 0, json.dumps({'report': [{'lv': lv}]}), ''
        if argv[0] == 'lvcreate':
            name = argv[argv.index('--name') + 1]
            size = argv[argv.index('--virtualsize') + 1]
            self.lvs[name] = {'lv_attr': 'Vwi-a-tz--', 'lv_size': size[:-1], 'data_percent': '0.00',
                              'metadata_percent': '', 'pool_lv': 'pool', 'vg_extent_size': str(EXTENT)}
            return 0, '', ''
        if argv[0] == 'lvremove':
            self.lvs.pop(argv[-1].split('/')[1], None)
            return 0, '', ''
        if argv[0] == 'blkid':
            return 2, '', ''  # no signature
        return 0, '', ''

    def ran(self, tool):
        return [c for c in self.calls if c[0] == tool]


@pytest.fixture
def meta_root(tmp_path, monkeypatch):
    monkeypatch.setattr(pool_layout, 'LVM_THIN_METADATA_ROOT', str(tmp_path))
    return tmp_path


@pytest.fixture
def lvm(meta_root, monkeypatch):
    scripted = ScriptedLvm()
    # The thin volume "appears" at once; its size comes from sysfs in real life.
    monkeypatch.setattr(pool_mod.LvmThinPool, '_wait_for', staticmethod(lambda device, timeout=30: device))
    monkeypatch.setattr(pool_layout, 'backing_size',
                        lambda path: int(scripted.lvs[os.path.basename(path)]['lv_size'])
                        if os.path.basename(path) in scripted.lvs else None)
    return scripted


def test_a_pool_spec_picks_the_backend_and_bad_ones_are_refused():
    assert pool_mod.open_pool('lvm-thin:vdisks/pool', None).kind == 'lvm-thin'
    assert pool_mod.open_pool('/srv/vdisks', None).kind == 'btrfs'
    for bad, message in (('zfs:tank/vdisks', 'not supported'), ('lvm-thin:vdisks', 'thin pool name'),
                         ('lvm-thin:/pool', 'volume group name'), ('lvm-thin:vg/-pool', 'thin pool name'),
                         ('lvm-thin:vg/po ol', 'thin pool name')):
        with pytest.raises(pool_mod.PoolError, match=message):
            pool_mod.open_pool(bad, None)


def test_metadata_lives_under_var_lib_for_lvm_and_beside_the_data_for_btrfs():
    assert pool_layout.metadata_dir('lvm-thin:vdisks/pool') == '/var/lib/clusterducks-vdisk/lvm-thin/vdisks/pool'
    assert pool_layout.metadata_dir('/srv/vdisks') == '/srv/vdisks'


def test_check_finds_a_missing_group_a_missing_pool_and_a_volume_that_is_not_a_thin_pool(lvm):
    with pytest.raises(pool_mod.PoolError, match='volume group other does not exist'):
        pool_mod.open_pool('lvm-thin:other/pool', lvm).check()
    with pytest.raises(pool_mod.PoolError, match='has no logical volume thin'):
        pool_mod.open_pool('lvm-thin:vdisks/thin', lvm).check()
    lvm.lvs['plain'] = dict(lvm.lvs['pool'], lv_attr='-wi-a-----')
    with pytest.raises(pool_mod.PoolError, match='not a thin pool'):
        pool_mod.open_pool('lvm-thin:vdisks/plain', lvm).check()
    pool_mod.open_pool('lvm-thin:vdisks/pool', lvm).check()


def test_create_makes_a_thin_volume_formats_it_and_writes_metadata_the_api_reads(lvm, meta_root):
    pool = pool_mod.open_pool('lvm-thin:vdisks/pool', lvm)
    record = pool.create('node01', G, 'xfs', [], wwn='wwn-1')
    assert (record.backing, record.backstore, record.wwn) == ('/dev/vdisks/vdisk-node01', 'block', 'wwn-1')
    create = lvm.ran('lvcreate')[0]
    assert create[create.index('--virtualsize') + 1] == '%db' % G
    assert create[-3:] == ['--thinpool', 'pool', 'vdisks']
    assert lvm.ran('mkfs.xfs') == [['mkfs.xfs', '-q', '/dev/vdisks/vdisk-node01']]
    meta = json.loads((meta_root / 'vdisks' / 'pool' / 'node01' / 'vdisk.json').read_text())
    assert meta['backing'] == '/dev/vdisks/vdisk-node01' and meta['wwn'] == 'wwn-1'
    again = pool_mod.open_pool('lvm-thin:vdisks/pool', lvm).get('node01')
    assert (again.backing, again.size_bytes, again.backstore) == (record.backing, G, 'block')
    assert [r.name for r in pool.list()] == ['node01']


def test_the_cache_mode_is_kept_in_the_metadata_and_only_write_through_is_written(lvm, meta_root):
    pool = pool_mod.open_pool('lvm-thin:vdisks/pool', lvm)
    record = pool.create('node01', G, 'xfs', [], write_through=True)
    assert (record.backstore, record.write_through) == ('fileio', True)
    path = meta_root / 'vdisks' / 'pool' / 'node01' / 'vdisk.json'
    assert json.loads(path.read_text())['write_through'] is True
    again = pool_mod.open_pool('lvm-thin:vdisks/pool', lvm).get('node01')
    assert (again.backing, again.backstore, again.write_through) == ('/dev/vdisks/vdisk-node01', 'fileio', True)
    pool.set_write_through(again, False)
    assert 'write_through' not in json.loads(path.read_text())  # as every vDisk made before the option
    assert pool_mod.open_pool('lvm-thin:vdisks/pool', lvm).get('node01').backstore == 'block'


def test_a_failed_format_removes_the_volume_and_its_metadata(lvm, meta_root):
    lvm.fail = 'mkfs.xfs'
    pool = pool_mod.open_pool('lvm-thin:vdisks/pool', lvm)
    with pytest.raises(pool_mod.PoolError, match='making a xfs filesystem failed'):
        pool.create('node01', G, 'xfs', [])
    assert 'vdisk-node01' not in lvm.lvs
    assert not (meta_root / 'vdisks' / 'pool' / 'node01').exists()


def test_a_volume_without_metadata_is_never_guessed_about(lvm):
    lvm.lvs['vdisk-node01'] = dict(lvm.lvs['pool'], lv_attr='Vwi-a-tz--')
    with pytest.raises(pool_mod.PoolError, match='interrupted creation'):
        pool_mod.open_pool('lvm-thin:vdisks/pool', lvm).get('node01')


def test_names_lvm_reserves_are_refused_before_anything_runs(lvm):
    pool = pool_mod.open_pool('lvm-thin:vdisks/pool', lvm)
    with pytest.raises(ValidationError, match='contains _tmeta, which LVM reserves'):
        pool.get('node_tmeta')
    assert lvm.ran('lvcreate') == []


def test_sizes_round_up_to_the_extent_size(lvm):
    pool = pool_mod.open_pool('lvm-thin:vdisks/pool', lvm)
    assert pool.round_size(513 * M) == 516 * M
    assert pool.round_size(G) == G


@pytest.mark.parametrize('data,metadata,what', [('90.00', '1.00', 'data'), ('12.00', '95.50', 'metadata')])
def test_a_thin_pool_without_room_refuses_new_and_grown_vdisks(meta_root, data, metadata, what):
    lvm = ScriptedLvm(data_percent=data, metadata_percent=metadata)
    with pytest.raises(pool_mod.PoolError, match=r'is \d+\.\d% full \(' + what + r'\)'):
        pool_mod.open_pool('lvm-thin:vdisks/pool', lvm).check_room('node01', G)


def test_grow_is_lvextend_and_a_partitioned_vdisk_gets_its_gpt_backup_moved_after_dropping_the_cache(lvm):
    pool = pool_mod.open_pool('lvm-thin:vdisks/pool', lvm)
    record = pool.create('node02', 2 * G, 'none', [{'number': 1, 'size_bytes': G, 'filesystem': 'none'}])
    del lvm.calls[:]
    pool.grow(record, 3 * G)
    assert [c[0] for c in lvm.calls] == ['lvextend', 'blockdev', 'sgdisk']
    assert lvm.calls[0][-2:] == ['%db' % (3 * G), 'vdisks/vdisk-node02']
    assert lvm.calls[1] == ['blockdev', '--flushbufs', '/dev/vdisks/vdisk-node02']
    assert lvm.calls[2] == ['sgdisk', '--move-second-header', '/dev/vdisks/vdisk-node02']
    with pytest.raises(ValidationError, match='shrinking'):
        pool.grow(record, G)


def test_delete_removes_the_volume_and_its_metadata(lvm, meta_root):
    pool = pool_mod.open_pool('lvm-thin:vdisks/pool', lvm)
    record = pool.create('node01', G, 'none', [])
    pool.delete(record)
    assert lvm.ran('lvremove')[-1][-1] == 'vdisks/vdisk-node01'
    assert not (meta_root / 'vdisks' / 'pool' / 'node01').exists()


def test_backing_size_reads_sysfs_for_block_devices(tmp_path):
    f = tmp_path / 'disk.img'
    f.write_bytes(b'\0' * 4096)
    assert pool_layout.backing_size(str(f)) == 4096
    assert pool_layout.backing_size(str(tmp_path / 'gone')) is None
    if os.path.exists('/dev/loop0'):
        assert pool_layout.backing_size('/dev/loop0') is not None  # sysfs, not st_size (0)


def test_without_dev_the_api_finds_a_thin_volume_by_its_device_mapper_name(tmp_path, monkeypatch):
    # The storage API runs with PrivateDevices=yes: no /dev/vdisks, but sysfs.
    for dm, name, sectors in (('dm-3', 'vdisks-pool', 999), ('dm-7', 'vdisks-vdisk--node--01', 2097152)):
        (tmp_path / dm / 'dm').mkdir(parents=True)
        (tmp_path / dm / 'dm' / 'name').write_text(name + '\n')
        (tmp_path / dm / 'size').write_text('%d\n' % sectors)
    monkeypatch.setattr(pool_layout, 'SYS_BLOCK', str(tmp_path))
    assert pool_layout.backing_size('/dev/vdisks/vdisk-node-01') == G
    assert pool_layout.backing_size('/dev/vdisks/vdisk-gone') is None
