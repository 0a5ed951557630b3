# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import stat
import types

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio
from ansible_collections.clusterducks.vdisk.tests.unit import fake_rtslib

T1 = 'iqn.2003-01.org.linux-iscsi.storage1:vdisk-node01'
T2 = 'iqn.2003-01.org.linux-iscsi.storage1:vdisk-node02'


@pytest.fixture
def world(monkeypatch):
    fake, fake_root_module, root = fake_rtslib.build_world()
    monkeypatch.setattr(lio, 'rtslib', fake)
    monkeypatch.setattr(lio, 'rtslib_root', fake_root_module)
    return fake, root


def _no_secrets(data):
    text = json.dumps(data)
    for secret in fake_rtslib.CHAP_SECRETS + fake_rtslib.CHAP_USERIDS:
        assert secret not in text
    assert 'password' not in text


def test_gather_all(world):
    fake, root = world
    info = lio.gather(root)

    assert info['fabric_modules'] == ['iscsi']  # loopback is not loaded
    assert info['save_file'] == '/etc/rtslib-fb-target/saveconfig.json'
    assert info['missing_targets'] == []
    assert fake.lookups == []  # full listing walks, no per-target lookups

    assert [(so['plugin'], so['name']) for so in info['storage_objects']] == [
        ('block', 'node02'), ('fileio', 'node01'), ('fileio', 'orphan'), ('ramdisk', 'spare')]
    sos = {so['name']: so for so in info['storage_objects']}
    assert sos['node01'] == {
        'name': 'node01', 'plugin': 'fileio', 'wwn': '0c7bdb5e-1d27-4e1c-9c0a-8e5d2f5b1a11',
        'size': 10737418240, 'udev_path': '/srv/vdisks/node01.img', 'write_back': False,
        'aio': True, 'status': 'activated', 'attributes': {},
    }
    assert sos['node02']['aio'] is None and sos['node02']['write_back'] is False
    assert sos['node02']['attributes'] == {'emulate_write_cache': '1', 'emulate_tpu': '1', 'queue_depth': '128'}
    assert sos['spare']['size'] is None and sos['spare']['udev_path'] is None
    # An rtslib error on one property must not lose the whole object.
    assert sos['orphan']['size'] is None and sos['orphan']['status'] == 'deactivated'

    assert [t['wwn'] for t in info['targets']] == [T1, T2]
    t1 = info['targets'][0]
    assert t1['fabric'] == 'iscsi'
    assert t1['tpgs'] == [{
        'tag': 1,
        'enable': True,
        'portals': [{'ip': '0.0.0.0', 'port': 3260}],
        'luns': [{'lun': 0, 'storage_object': {'name': 'node01', 'plugin': 'fileio'}}],
        'node_acls': [{
            'node_wwn': 'iqn.2005-03.org.open-iscsi:node01',
            'mapped_luns': [{'mapped_lun': 0, 'tpg_lun': 0, 'write_protect': False}],
            'chap': True,
            'chap_mutual': True,
        }],
        'chap': True,
        'chap_mutual': False,
        'attributes': {'authentication': '1', 'generate_node_acls': '0'},
        'parameters': {'HeaderDigest': 'CRC32C,None', 'MaxConnections': '1'},
    }]
    tpg2 = info['targets'][1]['tpgs'][0]
    assert tpg2['enable'] is False
    assert tpg2['portals'] == [{'ip': '192.0.2.10', 'port': 3261}]
    assert tpg2['node_acls'][0]['chap'] is False
    assert tpg2['node_acls'][0]['mapped_luns'][0]['write_protect'] is True


def test_gather_never_contains_secrets(world):
    _fake, root = world
    _no_secrets(lio.gather(root))
    _no_secrets(lio.gather(root, targets=[T1]))


def test_gather_targets_uses_lookup(world):
    fake, root = world
    info = lio.gather(root, targets=[T2, 'iqn.2003-01.org.example:absent', T2, 'not-an-iqn'])

    assert root.walked == []  # neither targets nor storage objects were listed
    assert fake.lookups == [
        ('iscsi', T2, 'lookup'),
        ('iscsi', 'iqn.2003-01.org.example:absent', 'lookup'),
        ('iscsi', 'not-an-iqn', 'lookup'),
    ]
    assert info['missing_targets'] == ['iqn.2003-01.org.example:absent', 'not-an-iqn']
    assert [t['wwn'] for t in info['targets']] == [T2]
    # Only the storage objects the requested targets use.
    assert [so['name'] for so in info['storage_objects']] == ['node02']


def test_lookup_does_not_load_fabric(world, monkeypatch):
    fake, root = world
    monkeypatch.setattr(root._fabrics['iscsi'], 'exists', False)
    info = lio.gather(root, targets=[T1])
    assert fake.lookups == []
    assert info['missing_targets'] == [T1]
    assert info['targets'] == [] and info['storage_objects'] == []


def test_rtslib_errors_new_name(monkeypatch):
    class Base(Exception):
        pass

    class NotInCFSError(Base):
        pass

    monkeypatch.setattr(lio, 'rtslib', types.SimpleNamespace(RTSLibError=Base, RTSLibNotInCFSError=NotInCFSError))
    assert lio.rtslib_errors() == (Base, NotInCFSError)


def test_rtslib_errors_old_name(world):
    fake, _root = world
    assert lio.rtslib_errors() == (fake.RTSLibError, fake.RTSLibNotInCFS)


def test_save_file_fallbacks(world, monkeypatch):
    assert lio.default_save_file(object()) == '/etc/rtslib-fb-target/saveconfig.json'
    monkeypatch.setattr(lio, 'rtslib_root', types.SimpleNamespace())
    assert lio.default_save_file() == '/etc/target/saveconfig.json'


def test_open_root_creates_dbroot(world, tmp_path):
    fake, root = world
    dbroot = tmp_path / 'etc' / 'rtslib-fb-target'
    fake.RTSRoot._preferred_dbroot = str(dbroot)
    old_umask = os.umask(0o077)
    try:
        assert lio.open_root() is root
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(dbroot.stat().st_mode) == 0o755


def test_open_root_without_preferred_dbroot_uses_etc_target(world):
    fake, _root = world
    del fake.RTSRoot._preferred_dbroot
    assert lio.dbroot_dir() == '/etc/target'


def test_open_root_lio_unavailable(world, tmp_path, monkeypatch):
    fake, _root = world

    def broken():
        raise fake.RTSLibError('Cannot mount configfs')

    broken._preferred_dbroot = str(tmp_path)  # never touch the host's /etc
    monkeypatch.setattr(fake, 'RTSRoot', broken)
    with pytest.raises(lio.LIOError, match='configfs.*target_core_mod.*Cannot mount configfs'):
        lio.open_root()


@pytest.fixture
def reload_lio(monkeypatch):
    """Reload module_utils.lio under faked sys.modules, restore it afterwards."""
    import importlib
    import sys

    def _reload(**modules):
        for name, module in modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        return importlib.reload(lio)

    yield _reload
    monkeypatch.undo()
    importlib.reload(lio)


def test_import_failure_is_recorded(reload_lio):
    # A None entry in sys.modules makes the import raise ImportError.
    mod = reload_lio(rtslib_fb=None, rtslib=None)
    assert mod.HAS_RTSLIB is False
    assert mod.rtslib is None
    assert 'import rtslib_fb' in mod.RTSLIB_IMPORT_ERROR


def test_import_falls_back_to_rtslib(reload_lio):
    new_root = types.ModuleType('rtslib.root')
    new_root.default_save_file = '/etc/target/saveconfig.json'
    new = types.ModuleType('rtslib')
    new.root = new_root
    mod = reload_lio(rtslib_fb=None, rtslib=new, **{'rtslib.root': new_root})
    assert mod.HAS_RTSLIB is True
    assert mod.rtslib is new
    assert mod.default_save_file() == '/etc/target/saveconfig.json'
