# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest


from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio
from ansible_collections.clusterducks.vdisk.plugins.modules import lio_info
from ansible_collections.clusterducks.vdisk.tests.unit.module_harness import ExitJson, FailJson, patch_module_args, raise_on_exit
from ansible_collections.clusterducks.vdisk.tests.unit import fake_rtslib

T1 = 'iqn.2003-01.org.linux-iscsi.storage1:vdisk-node01'


@pytest.fixture(autouse=True)
def module_exits(monkeypatch):
    raise_on_exit(monkeypatch)


@pytest.fixture
def world(monkeypatch, tmp_path):
    fake, fake_root_module, root = fake_rtslib.build_world()
    fake.RTSRoot._preferred_dbroot = str(tmp_path / 'dbroot')
    monkeypatch.setattr(lio, 'rtslib', fake)
    monkeypatch.setattr(lio, 'rtslib_root', fake_root_module)
    monkeypatch.setattr(lio, 'HAS_RTSLIB', True)
    return fake, root


def run(args):
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as excinfo:
            lio_info.main()
    return excinfo.type, excinfo.value.args[0]


def test_all_in_check_mode(world):
    _fake, root = world
    kind, result = run({'_ansible_check_mode': True})
    assert kind is ExitJson
    assert result['changed'] is False
    assert result['lio']['fabric_modules'] == ['iscsi']
    assert len(result['lio']['targets']) == 2
    assert len(result['lio']['storage_objects']) == 4
    assert sorted(root.walked) == ['storage_objects', 'targets']


def test_targets_option_uses_lookup(world):
    fake, root = world
    kind, result = run({'targets': [T1, 'iqn.2003-01.org.example:absent']})
    assert kind is ExitJson
    assert root.walked == []
    assert [mode for _fabric, _wwn, mode in fake.lookups] == ['lookup', 'lookup']
    assert result['lio']['missing_targets'] == ['iqn.2003-01.org.example:absent']
    assert [t['wwn'] for t in result['lio']['targets']] == [T1]
    text = json.dumps(result)
    for secret in fake_rtslib.CHAP_SECRETS + fake_rtslib.CHAP_USERIDS:
        assert secret not in text


def test_missing_rtslib(monkeypatch):
    monkeypatch.setattr(lio, 'HAS_RTSLIB', False)
    monkeypatch.setattr(lio, 'rtslib', None)
    monkeypatch.setattr(lio, 'RTSLIB_IMPORT_ERROR', 'Traceback: ModuleNotFoundError: rtslib_fb')
    kind, result = run({})
    assert kind is FailJson
    assert 'Failed to import the required Python library (rtslib-fb)' in result['msg']
    assert 'python3-rtslib-fb' in result['msg']
    assert result['exception'] == 'Traceback: ModuleNotFoundError: rtslib_fb'


def test_lio_unavailable(world, monkeypatch):
    fake, _root = world

    def broken():
        raise fake.RTSLibError('Cannot mount configfs')

    broken._preferred_dbroot = fake.RTSRoot._preferred_dbroot
    monkeypatch.setattr(fake, 'RTSRoot', broken)
    kind, result = run({})
    assert kind is FailJson
    assert 'LIO is not available' in result['msg']


def test_rtslib_error_while_reading(world, monkeypatch):
    fake, root = world

    def vanished(self):
        raise fake.RTSLibNotInCFS('No such TPG in configfs')

    monkeypatch.setattr(type(root), 'targets', property(vanished))
    kind, result = run({})
    assert kind is FailJson
    assert result['msg'] == 'reading LIO configuration failed: No such TPG in configfs'


def test_invalid_option_type(world):
    kind, result = run({'targets': {'not': 'a list'}})
    assert kind is FailJson
    assert 'targets' in result['msg']
