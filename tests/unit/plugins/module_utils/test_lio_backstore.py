# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""lio_backstore.recreate against the rtslib model: same WWN and mappings, or the old object back."""

from __future__ import annotations

import types

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio_backstore

T1 = 'iqn.2026-11.io.clusterducks:node01'
T2 = 'iqn.2026-11.io.clusterducks:node02'
I1 = 'iqn.2026-11.io.clusterducks:device.node01'
I2 = 'iqn.2026-11.io.clusterducks:device.node02'
G = 1 << 30
WWN = '6b1f7a52-9c4e-4d1a-8f3e-0a1b2c3d4e5f'


def record(size):
    return types.SimpleNamespace(name='a', backing='/srv/vdisks/a/disk.img', size_bytes=size, wwn=WWN,
                                 backstore='fileio')


@pytest.fixture
def host(lio_model):
    """vDisk a exported by two targets, mapped under other numbers and read-only for some; b beside it."""
    m, r = lio_model, lio_model.rtslib
    a = m.add_vdisk('a', size=G, wwn=WWN)
    b = m.add_vdisk('b')
    tpg1 = m.iscsi_target(T1)
    lun0, lun1 = r.LUN(tpg1, 0, a), r.LUN(tpg1, 1, b)
    acl1, acl2 = r.NodeACL(tpg1, I1), r.NodeACL(tpg1, I2)
    r.MappedLUN(acl1, 0, lun0, False)
    r.MappedLUN(acl1, 1, lun1, True)
    r.MappedLUN(acl2, 5, lun0, True)
    tpg2 = m.iscsi_target(T2)
    r.MappedLUN(r.NodeACL(tpg2, I1), 3, r.LUN(tpg2, 3, a), True)
    return m


def exports(host):
    """{(target, tpg lun): (vdisk, [(initiator, mapped lun, write_protect)])}"""
    out = {}
    for target in host.rtslib.RTSRoot().targets:
        tpg = host.rtslib.TPG(target, 1, 'lookup')
        for lun in tpg.luns:
            out[(target.wwn, lun.lun)] = (lun.storage_object.name, sorted(
                (m.node_wwn, m.mapped_lun, m.write_protect) for m in lun.mapped_luns))
    return out


def test_recreate_keeps_wwn_luns_mappings_and_write_protect(host):
    before = exports(host)
    so = lio_backstore.recreate(host.rtslib.FileIOStorageObject('a'), record(2 * G))
    assert (so.size, so.wwn, so.write_back, so.aio) == (2 * G, WWN, False, False)
    assert exports(host) == before
    assert before[(T1, 0)] == ('a', [(I1, 0, False), (I2, 5, True)])


def test_recreate_puts_the_old_object_back_whatever_change_fails(host):
    start = host.snapshot()
    before = host.view()
    count = host.mutations
    lio_backstore.recreate(host.rtslib.FileIOStorageObject('a'), record(2 * G))
    changes = host.mutations - count
    assert changes > 10
    for nth in range(1, changes + 1):
        host.restore(start)
        host.fail_at(nth)
        with pytest.raises(Exception, match='injected failure'):
            lio_backstore.recreate(host.rtslib.FileIOStorageObject('a'), record(2 * G))
        host.heal()
        assert host.view() == before, 'failure at change %d of %d' % (nth, changes)


def block_record(dev='/dev/vdisks/vdisk-a'):
    return types.SimpleNamespace(name='a', backing=dev, size_bytes=2 * G, wwn=WWN, backstore='block')


def test_a_move_to_a_block_backstore_keeps_wwn_luns_and_mappings_and_copies_while_unexported(host):
    host.block_devices['/dev/vdisks/vdisk-a'] = 2 * G
    before = exports(host)
    seen = []
    so = lio_backstore.recreate(host.rtslib.FileIOStorageObject('a'), block_record(),
                                between=lambda: seen.append(lio_backstore.lookup('a')))
    assert seen == [None]  # nothing exported the vDisk while its data was copied
    assert (so.plugin, so.size, so.wwn, so.udev_path) == ('block', 2 * G, WWN, '/dev/vdisks/vdisk-a')
    assert lio_backstore.untuned(so) == {} and so.get_attribute('emulate_tpu') == '1'
    assert exports(host) == before
    assert lio_backstore.lookup('a').plugin == 'block'


def test_a_failed_move_puts_the_fileio_object_back_whatever_change_fails(host):
    host.block_devices['/dev/vdisks/vdisk-a'] = 2 * G
    start = host.snapshot()
    before = host.view()
    count = host.mutations
    lio_backstore.recreate(host.rtslib.FileIOStorageObject('a'), block_record())
    changes = host.mutations - count
    for nth in range(1, changes + 1):
        host.restore(start)
        host.fail_at(nth)
        with pytest.raises(Exception, match='injected failure'):
            lio_backstore.recreate(host.rtslib.FileIOStorageObject('a'), block_record())
        host.heal()
        assert host.view() == before, 'failure at change %d of %d' % (nth, changes)
    # And a failing copy: nothing was changed for good either.
    host.restore(start)

    def copy_fails():
        raise OSError('dd: No space left on device')
    with pytest.raises(OSError):
        lio_backstore.recreate(host.rtslib.FileIOStorageObject('a'), block_record(), between=copy_fails)
    assert host.view() == before


def test_a_block_backstore_is_made_tuned_and_untuned_ones_are_found(lio_model):
    lio_model.block_devices['/dev/vdisks/vdisk-a'] = G
    so = lio_backstore.create(block_record())
    assert (so.plugin, so.size, so.wwn) == ('block', G, WWN)
    so.set_attribute('emulate_tpu', '0')
    assert lio_backstore.untuned(so) == {'emulate_tpu': '1'}
    lio_backstore.tune(so)
    assert lio_backstore.untuned(so) == {}
    lio_model.block_devices['/dev/vdisks/vdisk-a'] = 2 * G  # lvextend: LIO reads the new size itself
    assert so.size == 2 * G and lio_backstore.drift(so, block_record()) == []


def test_a_device_nobody_can_export_leaves_no_object_behind(lio_model):
    with pytest.raises(Exception, match='not a TYPE_DISK block device'):
        lio_backstore.create(block_record('/dev/vdisks/missing'))
    assert lio_backstore.lookup('a') is None


def test_active_sessions_are_the_logged_in_initiators_a_lun_of_the_vdisk_is_mapped_to(host):
    so = host.rtslib.FileIOStorageObject('a')
    assert lio_backstore.active_sessions(so) == []
    host.sessions.add((T2, I1))  # maps a as its LUN 3
    host.sessions.add((T2, I2))  # not in T2's ACLs
    assert lio_backstore.active_sessions(so) == [I1]
    host.sessions.clear()
    host.sessions.add((T1, I2))  # I2 maps a read-only in T1
    assert lio_backstore.active_sessions(so) == [I2]
    assert lio_backstore.active_sessions(host.rtslib.FileIOStorageObject('b')) == []


def thin_record(write_through):
    return types.SimpleNamespace(name='a', backing='/dev/vdisks/vdisk-a', size_bytes=G, wwn=WWN,
                                 backstore='fileio' if write_through else 'block', write_through=write_through)


def test_a_write_through_thin_vdisk_is_a_tuned_synchronous_fileio_object_on_its_device(lio_model):
    lio_model.block_devices['/dev/vdisks/vdisk-a'] = G
    so = lio_backstore.create(thin_record(True))
    assert (so.plugin, so.udev_path, so.wwn, so.write_back, so.aio) == ('fileio', '/dev/vdisks/vdisk-a', WWN,
                                                                        False, False)
    assert lio_backstore.untuned(so) == {}  # discards reach the pool as from a block backstore
    # lvextend: LIO reads the device's size; the size fileio shows is the one it was made with.
    lio_model.block_devices['/dev/vdisks/vdisk-a'] = 2 * G
    grown = thin_record(True)
    grown.size_bytes = 2 * G
    assert lio_backstore.resizes_itself(grown) and lio_backstore.drift(so, grown) == []
    # Either way round, the other cache mode is a recreate; the device is never opened twice.
    assert lio_backstore.drift(so, thin_record(False)) == ['a fileio backstore instead of block']
    with pytest.raises(Exception, match='in use'):
        lio_model.rtslib.BlockStorageObject('b', dev='/dev/vdisks/vdisk-a')


def test_switching_the_cache_mode_keeps_wwn_luns_and_mappings(lio_model):
    lio_model.block_devices['/dev/vdisks/vdisk-a'] = G
    so = lio_backstore.create(thin_record(False))
    tpg = lio_model.iscsi_target(T1)
    lun = lio_model.rtslib.LUN(tpg, 0, so)
    lio_model.rtslib.MappedLUN(lio_model.rtslib.NodeACL(tpg, I1), 4, lun, False)
    before = exports(lio_model)
    so = lio_backstore.recreate(so, thin_record(True))
    assert (so.plugin, so.wwn, exports(lio_model)) == ('fileio', WWN, before)
    so = lio_backstore.recreate(so, thin_record(False))
    assert (so.plugin, so.wwn, exports(lio_model)) == ('block', WWN, before)
