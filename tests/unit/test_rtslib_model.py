# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rtslib-fb model keeps rtslib's create/lookup rules and configfs cascades."""

from __future__ import annotations

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio, lio_backstore
from ansible_collections.clusterducks.vdisk.tests.unit.rtslib_model import (
    InjectedFailure, Model, RTSLibError, RTSLibNotInCFS)

IQN = 'iqn.2026-11.io.clusterducks:node01'
INIT = 'iqn.2026-11.io.clusterducks:device.node01'


@pytest.fixture
def m():
    return Model()


def world(m):
    r = m.rtslib
    so = m.add_vdisk('node01')
    tpg = m.iscsi_target(IQN)
    lun = r.LUN(tpg, 0, so)
    acl = r.NodeACL(tpg, INIT, mode='create')
    mlun = r.MappedLUN(acl, 0, lun, True)
    return so, tpg, lun, acl, mlun


def test_modes(m):
    r = m.rtslib
    fabric = r.FabricModule('iscsi')
    assert not fabric.exists  # not loaded until used
    with pytest.raises(RTSLibNotInCFS):
        r.Target(fabric, IQN, mode='lookup')
    assert m.modprobed == ['iscsi']
    t = r.Target(fabric, IQN.upper().replace('IQN', 'iqn'), mode='create')
    assert t.wwn == IQN  # normalized to lower case
    with pytest.raises(RTSLibError, match='already exists'):
        r.Target(fabric, IQN, mode='create')
    assert r.Target(fabric, IQN, mode='any') == t
    with pytest.raises(RTSLibError, match='WWN not valid'):
        r.Target(fabric, 'iqn.2026-11.io.clusterducks:node_01')
    with pytest.raises(RTSLibError, match='Invalid mode'):
        r.Target(fabric, IQN, mode='maybe')
    tpg = r.TPG(t, 1, mode='create')
    assert tpg.enable is False  # the kernel creates TPGs disabled
    assert [x.tag for x in t.tpgs] == [1]
    assert r.TPG(t).tag == 2  # the first free tag


def test_luns_and_mapped_luns(m):
    r = m.rtslib
    so, tpg, lun, acl, mlun = world(m)
    with pytest.raises(RTSLibError, match='LUN already exists'):
        r.LUN(tpg, 0, so)
    with pytest.raises(RTSLibNotInCFS):
        r.LUN(tpg, 1)
    assert r.LUN(tpg, 0).storage_object == so
    with pytest.raises(RTSLibError, match='MappedLUN already exists'):
        r.MappedLUN(acl, 0, 0, False)
    with pytest.raises(RTSLibError, match='no meaning'):
        r.MappedLUN(acl, 1, write_protect=True)
    with pytest.raises(RTSLibError, match='LUN 7 does not exist'):
        r.MappedLUN(acl, 1, 7)
    assert [x.mapped_lun for x in acl.mapped_luns] == [0]
    found = r.MappedLUN(acl, 0)
    assert found.write_protect is True and found.tpg_lun == lun
    other = r.MappedLUN(acl, 5, lun)  # another number for the same TPG LUN
    assert other.write_protect is False and other.tpg_lun.lun == 0
    assert sorted(x.mapped_lun for x in lun.mapped_luns) == [0, 5]
    gone = r.FileIOStorageObject('gone', dev='/x', size=1)
    gone.delete()
    with pytest.raises(RTSLibError, match='storage_object does not exist'):
        r.LUN(tpg, 3, gone)


def test_deleting_cascades_like_configfs(m):
    r = m.rtslib
    so, tpg, lun, acl, mlun = world(m)
    so2 = m.add_vdisk('node02')
    lun1 = r.LUN(tpg, 1, so2)
    r.MappedLUN(acl, 1, lun1)
    so.delete()
    assert not lun.exists and not mlun.exists and acl.exists
    assert [x.lun for x in tpg.luns] == [1]
    with pytest.raises(RTSLibNotInCFS):
        mlun.write_protect
    lun1.delete()
    assert list(acl.mapped_luns) == [] and so2.exists and so2.status == 'deactivated'
    r.NetworkPortal(tpg, '0.0.0.0', 3260)
    tpg.parent_target.delete()
    assert not acl.exists and list(m.rtslib.RTSRoot().targets) == []
    assert [x.name for x in m.rtslib.RTSRoot().storage_objects] == ['node02']


def test_storage_objects(m):
    r = m.rtslib
    with pytest.raises(RTSLibNotInCFS):
        r.FileIOStorageObject('node01')
    so = r.FileIOStorageObject('node01', dev='/srv/a.img', size=4096, wwn='w-1', write_back=False, aio=True)
    assert (so.udev_path, so.size, so.wwn, so.write_back, so.aio, so.status) == (
        '/srv/a.img', 4096, 'w-1', False, True, 'deactivated')
    with pytest.raises(RTSLibError, match='already exists'):
        r.FileIOStorageObject('node01', dev='/srv/b.img', size=1)
    with pytest.raises(RTSLibError, match='size needed'):
        r.FileIOStorageObject('node02', dev='/srv/b.img')
    with pytest.raises(RTSLibError, match='cannot contain'):
        r.FileIOStorageObject('a b')


def test_portals_attributes_and_auth(m):
    r = m.rtslib
    tpg = m.iscsi_target(IQN)
    with pytest.raises(RTSLibError, match='Could not create NetworkPortal'):
        r.NetworkPortal(tpg, 'fd00::1', 3260)
    np = r.NetworkPortal(tpg, '[fd00::1]', 3260, mode='create')
    assert [(p.ip_address, p.port) for p in tpg.network_portals] == [('[fd00::1]', 3260)]
    np.delete()
    assert list(tpg.network_portals) == []
    assert tpg.get_attribute('authentication') == '1'
    tpg.set_attribute('login_timeout', 10)
    assert tpg.get_attribute('login_timeout') == '10'
    with pytest.raises(RTSLibError, match='Cannot set attribute'):
        tpg.set_attribute('authentication', 'True')
    with pytest.raises(RTSLibError, match='Cannot find attribute'):
        tpg.set_attribute('nope', 1)
    tpg.set_parameter('HeaderDigest', 'None')
    assert tpg.get_parameter('HeaderDigest') == 'None'
    acl = r.NodeACL(tpg, INIT)
    assert acl.chap_userid == ''
    acl.chap_userid = 'node01'
    assert acl.chap_userid == 'node01'
    with pytest.raises(RTSLibError, match='NULL'):
        acl.chap_password = 'NULL'
    acl.chap_userid = ''
    assert acl.chap_userid == ''
    fabric = r.FabricModule('iscsi')
    assert fabric.discovery_enable_auth is False
    fabric.discovery_userid = 'disc'
    fabric.discovery_enable_auth = True
    assert m.dump()['fabric_modules'] == [{'name': 'iscsi', 'discovery_userid': 'disc',
                                           'discovery_enable_auth': True}]


def test_failure_injection(m):
    r = m.rtslib
    tpg = m.iscsi_target(IQN)
    before = m.view()
    m.fail_at(2)
    r.NetworkPortal(tpg, '0.0.0.0', 3260)
    with pytest.raises(InjectedFailure):
        r.NetworkPortal(tpg, '10.0.0.1', 3260)
    assert [p.ip_address for p in tpg.network_portals] == ['0.0.0.0']  # the failed change did not happen
    r.NetworkPortal(tpg, '10.0.0.2', 3260)  # only the 2nd change fails
    m.fail_on(lambda op: op.startswith('rmdir'))
    with pytest.raises(RTSLibError):
        tpg.parent_target.delete()
    m.heal()
    tpg.parent_target.delete()
    assert m.view() != before and list(m.rtslib.RTSRoot().targets) == []


def test_dump_and_gather(m, monkeypatch):
    world(m)
    monkeypatch.setattr(lio, 'rtslib', m.rtslib)
    monkeypatch.setattr(lio, 'rtslib_root', m.root_module)
    d = m.dump()
    assert d['fabric_modules'] == []
    tpg = d['targets'][0]['tpgs'][0]
    assert tpg['luns'][0]['storage_object'] == '/backstores/fileio/node01'
    assert tpg['node_acls'][0]['mapped_luns'][0]['write_protect'] is True
    assert tpg['attributes']['login_timeout'] == 15
    assert lio_backstore.lookup('node01').wwn == m.rtslib.FileIOStorageObject('node01').wwn
    assert lio_backstore.lookup('nope') is None
    info = lio.gather(m.rtslib.RTSRoot(), targets=[IQN])
    assert info['targets'][0]['tpgs'][0]['node_acls'][0]['mapped_luns'] == [
        {'mapped_lun': 0, 'tpg_lun': 0, 'write_protect': True}]
    assert info['save_file'] == m.root_module.default_save_file
    snap = m.snapshot()
    m.rtslib.FileIOStorageObject('node01').delete()
    m.restore(snap)
    assert m.dump() == d
