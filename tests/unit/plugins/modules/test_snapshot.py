# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The snapshot module's argument handling and plans over a modelled pool (the real thing: the storage_api scenario)."""

from __future__ import annotations

import contextlib
import json

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio, lio_backstore, pool_layout
from ansible_collections.clusterducks.vdisk.plugins.module_utils import thin_snapshots as ts
from ansible_collections.clusterducks.vdisk.plugins.module_utils.pool import LvmThinPool, VdiskRecord
from ansible_collections.clusterducks.vdisk.plugins.modules import snapshot

from ansible_collections.clusterducks.vdisk.tests.unit.module_harness import (ExitJson, FailJson, patch_module_args,
                                                                              raise_on_exit)
from ansible_collections.clusterducks.vdisk.tests.unit.plugins.module_utils.test_thin_snapshots import FakeThinPool, Lvm

POOL = 'lvm-thin:vdisks/pool'


class Pool(LvmThinPool):
    def check(self):
        pass

    def get(self, name):
        if name != 'node01':
            return None
        return VdiskRecord('node01', '/dev/vdisks/vdisk-node01', 1 << 30, 'wwn-node01', 'xfs', [], None, 'block')


class SO:
    udev_path = '/dev/vdisks/vdisk-node01'


@pytest.fixture
def env(tmp_path, monkeypatch):
    raise_on_exit(monkeypatch)
    monkeypatch.setattr(pool_layout, 'LVM_THIN_METADATA_ROOT', str(tmp_path))
    meta = tmp_path / 'vdisks' / 'pool' / 'node01'
    meta.mkdir(parents=True)
    (meta / 'vdisk.json').write_text(json.dumps({'name': 'node01', 'wwn': 'wwn-node01',
                                                 'backing': '/dev/vdisks/vdisk-node01'}))
    dm = FakeThinPool({'node01': 1})
    lvm = Lvm({'node01': (1, True)})
    monkeypatch.setattr(snapshot, 'open_pool', lambda spec, run: Pool(spec, run) if spec.startswith('lvm') else
                        type('Btrfs', (), {'check': lambda self: None})())
    real = ts.ThinSnapshots
    monkeypatch.setattr(ts, 'ThinSnapshots', lambda spec, run, **kw: real(spec, lvm, dm=dm, write_marker=dm.write_marker, **kw))
    monkeypatch.setattr(snapshot, 'host_lock', contextlib.nullcontext)
    monkeypatch.setattr(lio, 'require_rtslib', lambda module: None)
    monkeypatch.setattr(lio, 'open_root', object)
    sessions = []
    monkeypatch.setattr(lio_backstore, 'lookup', lambda name: SO())
    monkeypatch.setattr(lio_backstore, 'active_sessions', lambda so: list(sessions))
    return {'dm': dm, 'sessions': sessions}


def run(args, check_mode=False):
    args = dict({'pool': POOL, 'vdisk': 'node01'}, **args)
    if check_mode:
        args['_ansible_check_mode'] = True
    args['_ansible_diff'] = True
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as excinfo:
            snapshot.main()
    return excinfo.type, excinfo.value.args[0]


def test_create_is_idempotent_and_check_mode_changes_nothing(env):
    kind, result = run({'name': 'before'}, check_mode=True)
    assert kind is ExitJson and result['changed'] and result['snapshot']['created'] == '(new)'
    assert result['diff'] == {'before': {}, 'after': {'node01@before': result['snapshot']}}
    assert [c for c, _a in env['dm'].log] == []
    kind, result = run({'name': 'before'})
    assert kind is ExitJson and result['changed'] and result['snapshot']['kind'] == 'manual'
    assert result['diff']['after']['node01@before']['name'] == 'before'
    kind, result = run({'name': 'before'})
    assert kind is ExitJson and not result['changed']
    kind, result = run({'name': 'before', 'state': 'absent'})
    assert kind is ExitJson and result['changed']
    kind, result = run({'name': 'before', 'state': 'absent'})
    assert kind is ExitJson and not result['changed']


@pytest.mark.parametrize('args, message', [
    ({'name': 'bad\n'}, 'invalid'),
    ({'name': '../x'}, 'invalid'),
    ({'name': 'auto-20260101T000000Z'}, 'belong to the schedule'),
    ({'name': 'pre-rollback-x'}, 'belong to the schedule'),
    ({'name': 'x', 'vdisk': 'nosuch'}, 'not in pool'),
    ({'name': 'x', 'vdisk': 'a/b'}, 'invalid'),
    ({'name': 'nosuch', 'state': 'rolled_back'}, 'has no snapshot nosuch'),
    ({'name': 'x', 'pool': '/srv/vdisks'}, 'need an LVM thin pool'),
])
def test_bad_input_is_refused_before_anything_changes(env, args, message):
    kind, result = run(args)
    assert kind is FailJson and message in result['msg']
    assert [c for c, _a in env['dm'].log] == []


def test_rollback_is_refused_while_an_initiator_is_logged_in(env):
    run({'name': 'before'})
    env['sessions'].append('iqn.2026-11.io.x:node01')
    kind, result = run({'name': 'before', 'state': 'rolled_back'})
    assert kind is FailJson and 'iqn.2026-11.io.x:node01' in result['msg'] and 'force' in result['msg']
    kind, result = run({'name': 'before', 'state': 'rolled_back', 'force': True}, check_mode=True)
    assert kind is ExitJson and result['changed'] and result['logged_in'] == ['iqn.2026-11.io.x:node01']
    assert 'kept_as' not in result
