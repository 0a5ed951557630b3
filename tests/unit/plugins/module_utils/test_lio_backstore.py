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
    return types.SimpleNamespace(name='a', backing='/srv/vdisks/a/disk.img', size_bytes=size, wwn=WWN)


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
