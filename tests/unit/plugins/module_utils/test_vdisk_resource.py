# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Planning in the vdisk module: what a run would do, and what it refuses."""

from __future__ import annotations

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils.pool import VdiskRecord
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import ValidationError
from ansible_collections.clusterducks.vdisk.plugins.modules import vdisk

G = 1 << 30


def params(**over):
    p = {'pool': '/srv/vdisks', 'name': None, 'size': None, 'filesystem': None, 'partitions': None,
         'state': 'present', 'force': False, 'vdisks': None}
    p.update(over)
    return p


def item(**over):
    return vdisk.requested_items(params(**dict({'name': 'node01'}, **over)))[0]


class SO:
    def __init__(self, record, **over):
        self.udev_path, self.size, self.write_back, self.aio = record.backing, record.size_bytes, False, False
        self.__dict__.update(over)


def record(size=G, filesystem='xfs', partitions=()):
    return VdiskRecord('node01', '/srv/vdisks/node01/disk.img', size, 'wwn-1', filesystem, list(partitions))


def test_items_take_module_defaults():
    items = vdisk.requested_items(params(state='absent', force=True, vdisks=[
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
        vdisk.requested_items(params(vdisks=vdisks))


def test_plan_create_needs_a_size():
    with pytest.raises(ValidationError, match='size is required'):
        vdisk.plan_present(item(), None, None, None)
    spec = item(size='1G')
    assert vdisk.plan_present(spec, None, None, None) == ['created', 'exported']
    assert spec['filesystem_final'] == 'xfs'


def test_plan_partitions_default_to_no_whole_disk_filesystem():
    spec = item(size='2G', partitions=[{'size': '1G', 'filesystem': 'ext4'}, {'size': None}])
    vdisk.plan_present(spec, None, None, None)
    assert spec['filesystem_final'] == 'none'
    assert [p['filesystem'] for p in spec['layout']] == ['ext4', 'xfs']


def test_plan_nothing_to_do():
    r = record()
    assert vdisk.plan_present(item(size='1G'), r, SO(r), None) == []
    assert vdisk.plan_present(item(), r, SO(r), None) == []


def test_plan_grow_reexports_and_shrink_is_refused():
    r = record()
    assert vdisk.plan_present(item(size='2G'), r, SO(r), None) == ['grown', 'reexported']
    with pytest.raises(ValidationError, match='shrinking it to 512M is refused'):
        vdisk.plan_present(item(size='512M'), r, SO(r), None)


def test_plan_converges_a_drifted_backstore():
    r = record()
    assert vdisk.plan_present(item(), r, SO(r, write_back=True), None) == ['reexported']
    assert vdisk.plan_present(item(), r, SO(r, size=G // 2), None) == ['reexported']
    assert vdisk.plan_present(item(), r, SO(r, aio=True), None) == ['reexported']
    assert vdisk.plan_present(item(), r, None, None) == ['exported']


def test_plan_never_reformats_or_repartitions():
    with pytest.raises(ValidationError, match='never reformatted'):
        vdisk.plan_present(item(filesystem='ext4'), record(), None, None)
    parted = record(2 * G, 'none', [{'number': 1, 'size_bytes': G, 'filesystem': 'xfs'},
                                    {'number': 2, 'size_bytes': G - (2 << 20), 'filesystem': 'xfs'}])
    same = [{'size': '1G', 'filesystem': 'xfs'}, {'size': None, 'filesystem': 'xfs'}]
    assert vdisk.plan_present(item(partitions=same), parted, SO(parted), None) == []
    with pytest.raises(ValidationError, match='never changed'):
        vdisk.plan_present(item(partitions=[{'size': '1500M', 'filesystem': 'xfs'}, {'size': None, 'filesystem': 'xfs'}]),
                           parted, SO(parted), None)
