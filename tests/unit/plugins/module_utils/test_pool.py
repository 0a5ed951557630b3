# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import shutil

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import pool as pool_mod
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import ValidationError

G = 1 << 30
M = 1 << 20


def test_layout_whole_disk():
    assert pool_mod.normalize_layout(G, 'xfs', []) == []


def test_layout_xfs_minimum():
    with pytest.raises(ValidationError, match='at least 300M'):
        pool_mod.normalize_layout(100 * M, 'xfs', [])
    assert pool_mod.normalize_layout(100 * M, 'ext4', []) == []


def test_layout_partitions_fill_the_rest():
    parts = pool_mod.normalize_layout(2 * G, 'none', [{'size': '512M', 'filesystem': 'ext4'},
                                                      {'size': None, 'filesystem': 'xfs'}])
    assert parts == [{'number': 1, 'size_bytes': 512 * M, 'filesystem': 'ext4'},
                     {'number': 2, 'size_bytes': 2 * G - 512 * M - 2 * M, 'filesystem': 'xfs'}]


@pytest.mark.parametrize('parts,message', [
    ([{'size': '2G', 'filesystem': 'xfs'}], 'room for'),
    ([{'size': '1G', 'filesystem': 'xfs'}], 'room for'),  # GPT needs its 2 MiB
    ([{'size': None, 'filesystem': 'xfs'}, {'size': '400M', 'filesystem': 'xfs'}], 'only the last'),
    ([{'size': '100M', 'filesystem': 'xfs'}], 'at least 300M'),
    ([{'size': '400M', 'filesystem': 'zfs'}], 'not one of'),
])
def test_layout_rejects(parts, message):
    with pytest.raises(ValidationError, match=message):
        pool_mod.normalize_layout(G, 'none', parts)


def test_layout_filesystem_with_partitions_is_an_error():
    with pytest.raises(ValidationError, match='set filesystem: none'):
        pool_mod.normalize_layout(G, 'xfs', [{'size': '400M', 'filesystem': 'xfs'}])


def test_open_pool_wants_an_absolute_path():
    with pytest.raises(pool_mod.PoolError):
        pool_mod.open_pool('tank/vdisks', None)


class FakeRunner:
    """Plays btrfs/mkfs/blkid against a plain directory, recording every command."""

    def __init__(self, fail_on=None):
        self.calls = []
        self.fail_on = fail_on

    def __call__(self, argv):
        self.calls.append(argv)
        if self.fail_on and argv[0] == self.fail_on:
            return 1, '', '%s: boom' % argv[0]
        if argv[:3] == ['btrfs', 'subvolume', 'create']:
            os.mkdir(argv[3])
        elif argv[:3] == ['btrfs', 'subvolume', 'delete']:
            shutil.rmtree(argv[3])
        elif argv[0] == 'blkid':
            return 2, '', ''
        return 0, '', ''


@pytest.fixture
def btrfs(tmp_path, monkeypatch):
    monkeypatch.setattr(pool_mod, '_mount_fstype', lambda path: 'btrfs')
    runner = FakeRunner()
    return pool_mod.BtrfsPool(str(tmp_path), runner), runner


def test_create_get_list_grow_delete(btrfs, tmp_path):
    pool, runner = btrfs
    pool.check()
    record = pool.create('node01', G, 'xfs', [])
    assert os.path.getsize(tmp_path / 'node01' / 'disk.img') == G
    assert ['chattr', '+C', str(tmp_path / 'node01')] in runner.calls
    assert ['mkfs.xfs', '-q', record.backing] in runner.calls
    meta = json.loads((tmp_path / 'node01' / 'vdisk.json').read_text())
    assert meta['wwn'] == record.wwn and meta['filesystem'] == 'xfs'
    again = pool.get('node01')
    assert (again.wwn, again.size_bytes) == (record.wwn, G)
    assert [r.name for r in pool.list()] == ['node01']
    pool.grow(again, 2 * G)
    assert pool.get('node01').size_bytes == 2 * G
    with pytest.raises(ValidationError, match='shrinking'):
        pool.grow(again, G)
    pool.delete(again)
    assert pool.get('node01') is None


def test_a_failed_create_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(pool_mod, '_mount_fstype', lambda path: 'btrfs')
    pool = pool_mod.BtrfsPool(str(tmp_path), FakeRunner(fail_on='mkfs.xfs'))
    with pytest.raises(pool_mod.PoolError, match='mkfs.xfs'):
        pool.create('node01', G, 'xfs', [])
    assert not os.path.exists(tmp_path / 'node01')


def test_never_formats_a_disk_with_a_signature(tmp_path, monkeypatch):
    monkeypatch.setattr(pool_mod, '_mount_fstype', lambda path: 'btrfs')
    runner = FakeRunner()
    real = runner.__call__

    def blkid_finds_xfs(argv):
        if argv[0] == 'blkid':
            runner.calls.append(argv)
            return 0, 'TYPE="xfs"', ''
        return real(argv)
    pool = pool_mod.BtrfsPool(str(tmp_path), blkid_finds_xfs)
    with pytest.raises(pool_mod.PoolError, match='refusing to format'):
        pool.create('node01', G, 'xfs', [])
    assert not any(c[0].startswith('mkfs') for c in runner.calls)
    assert not os.path.exists(tmp_path / 'node01')


def test_an_interrupted_creation_is_reported_not_guessed(btrfs, tmp_path):
    pool = btrfs[0]
    (tmp_path / 'half').mkdir()
    with pytest.raises(pool_mod.PoolError, match='interrupted creation'):
        pool.get('half')


def test_check_refuses_other_filesystems(tmp_path, monkeypatch):
    monkeypatch.setattr(pool_mod, '_mount_fstype', lambda path: 'ext4')
    with pytest.raises(pool_mod.PoolError, match='not btrfs'):
        pool_mod.BtrfsPool(str(tmp_path), FakeRunner()).check()
    with pytest.raises(pool_mod.PoolError, match='does not exist'):
        pool_mod.BtrfsPool(str(tmp_path / 'nope'), FakeRunner()).check()


def test_mount_fstype_reads_mountinfo():
    assert pool_mod._mount_fstype('/proc/self') == 'proc'


def test_growing_a_partitioned_vdisk_moves_the_gpt_backup_header(btrfs, tmp_path):
    pool, runner = btrfs
    record = pool.create('node02', G, 'none', [{'number': 1, 'size_bytes': 512 << 20, 'filesystem': 'none'}])
    pool.grow(record, 2 * G)
    assert ['sgdisk', '--move-second-header', record.backing] in runner.calls
    whole = pool.create('node03', G, 'none', [])
    pool.grow(whole, 2 * G)
    assert not any(c[0] == 'sgdisk' and whole.backing in c for c in runner.calls)


def test_metadata_is_readable_by_the_api_but_not_writable(btrfs, tmp_path):
    pool, runner = btrfs
    pool.create('node01', G, 'xfs', [])
    assert oct(os.stat(tmp_path / 'node01' / 'vdisk.json').st_mode & 0o777) == oct(0o644)


def test_the_service_reads_the_pool_with_the_same_code():
    # The API's pool reader is a link to the modules' (as rules.py is).
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
    service = os.path.join(repo, 'roles', 'storage_api', 'files', 'vdisk_api', 'pool_layout.py')
    assert os.path.islink(service)
    assert os.path.realpath(service) == os.path.realpath(os.path.join(repo, 'plugins', 'module_utils', 'pool_layout.py'))


def test_pool_and_layout_agree(btrfs, tmp_path):
    from ansible_collections.clusterducks.vdisk.plugins.module_utils import pool_layout
    pool, runner = btrfs
    made = pool.create('node02', G, 'none', [{'number': 1, 'size_bytes': 512 << 20, 'filesystem': 'none'}])
    data = pool_layout.parse_metadata(json.loads((tmp_path / 'node02' / 'vdisk.json').read_text()),
                                      str(tmp_path / 'node02'))
    assert (data['name'], data['wwn'], data['size_bytes'], data['partitions']) == (
        made.name, made.wwn, G, made.partitions)
    assert pool_layout.names(str(tmp_path), lambda n: True) == ['node02']
