# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""iscsi_target end to end against the rtslib model: results, check mode, failures and the save file."""

from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.clusterducks.vdisk.plugins.modules import iscsi_target
from ansible_collections.clusterducks.vdisk.tests.unit.module_harness import (
    ExitJson, FailJson, patch_module_args, raise_on_exit)

T1 = 'iqn.2026-11.io.clusterducks:node01'
T2 = 'iqn.2026-11.io.clusterducks:node02'
T3 = 'iqn.2026-11.io.clusterducks:node03'
INIT = 'iqn.2026-11.io.clusterducks:device.node01'
CHAP = {'userid': 'node01', 'password': 'chap-secret-0001'}


@pytest.fixture(autouse=True)
def module_exits(monkeypatch):
    raise_on_exit(monkeypatch)


@pytest.fixture
def host(lio_model):
    for name in ('a', 'b', 'c'):
        lio_model.add_vdisk(name)
    return lio_model


def run(args, check=False, diff=False):
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as excinfo:
            iscsi_target.main()
    return excinfo.type, excinfo.value.args[0]


def target(iqn, vdisk, **over):
    t = {'iqn': iqn, 'luns': [{'lun': 0, 'vdisk': vdisk}], 'initiators': [{'iqn': INIT, 'chap': CHAP}]}
    t.update(over)
    return t


def saved(host):
    path = host.root_module.default_save_file
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def test_before_and_after_are_returned_without_diff_mode(host):
    kind, result = run({'targets': [target(T1, 'a')]})
    assert kind is ExitJson and result['changed'] is True
    item = result['targets'][0]
    assert item['before'] is None
    assert item['after']['initiators'][0]['chap'] == {'userid': 'node01', 'password': '******** (changed)'}
    assert 'diff' not in result
    assert CHAP['password'] not in json.dumps(result)
    assert saved(host) == host.dump()

    kind, result = run({'targets': [target(T1, 'a')]}, diff=True)
    item = result['targets'][0]
    assert result['changed'] is False and item['actions'] == []
    assert item['before'] == item['after']
    assert item['before']['initiators'][0]['chap']['password'] == '********'
    assert item['before']['luns'] == [{'lun': 0, 'vdisk': 'a'}]
    assert result['diff'] == {'before': {}, 'after': {}}

    kind, result = run({'iqn': T1, 'state': 'absent'}, diff=True)
    item = result['targets'][0]
    assert item['actions'] == ['delete target %s' % T1] and item['after'] is None
    assert item['before']['luns'] == [{'lun': 0, 'vdisk': 'a'}]
    assert result['diff']['before'][T1]['iqn'] == T1 and result['diff']['after'] == {}


def test_a_failing_target_rolls_back_the_targets_applied_before_it(host):
    """Bug: T1 stayed live but unsaved when T2 failed; a re-run without T2 then saw nothing to do."""
    run({'targets': [target(T3, 'c')]})
    before, before_saved = host.view(), saved(host)
    host.fail_on(lambda op: op.startswith('mkdir') and T2 in op and '/lun/' in op)
    kind, result = run({'targets': [target(T1, 'a'), target(T2, 'b'), target(T3, 'c', luns=[])]})
    assert kind is FailJson
    assert 'changing LIO failed at target %s' % T2 in result['msg']
    assert 'Put back as before this run: target %s, target %s.' % (T2, T1) in result['msg']
    assert 'as before this run' in result['msg']
    assert host.view() == before  # nothing of T1 (or T2) is left live ...
    assert saved(host) == before_saved  # ... and the save file still matches LIO
    host.heal()
    kind, result = run({'targets': [target(T1, 'a')]})
    assert result['changed'] is True and saved(host) == host.dump()


def test_when_the_rollback_fails_too_what_is_live_is_saved(host):
    run({'targets': [target(T3, 'c')]})
    # T2 fails; putting T1 back (deleting it) fails as well.
    host.fail_on(lambda op: (op.startswith('mkdir') and T2 in op and '/lun/' in op)
                 or (op.startswith('rmdir') and op.endswith(T1)))
    kind, result = run({'targets': [target(T1, 'a'), target(T2, 'b')]})
    assert kind is FailJson
    assert 'Could not put back: target %s' % T1 in result['msg']
    assert 'was saved to %s' % host.root_module.default_save_file in result['msg']
    host.heal()
    assert sorted(t['wwn'] for t in saved(host)['targets']) == [T1, T3]
    assert saved(host) == host.dump()  # LIO and its save file agree


def test_a_failing_save_puts_everything_back(host, tmp_path):
    before = host.view()
    # The save file's directory cannot be made: a file is in the way.
    (tmp_path / 'etc').write_text('not a directory')
    kind, result = run({'targets': [target(T1, 'a'), target(T2, 'b')]})
    assert kind is FailJson
    assert result['msg'].startswith("saving LIO's configuration to %s failed" % host.root_module.default_save_file)
    assert host.view() == before


def test_check_mode_plans_luns_of_vdisks_not_created_yet(host):
    """Bug: check mode failed with 'unknown vDisk' for a vDisk a vdisk task earlier in the play would create."""
    before = host.view()
    kind, result = run({'targets': [target(T1, 'new')]}, check=True)
    assert kind is ExitJson and result['changed'] is True
    assert 'add LUN 0: vDisk new (not created yet)' in result['targets'][0]['actions']
    assert any('unknown vDisk new (not created yet' in w for w in ansible_warnings.get_warning_messages())
    assert host.view() == before

    kind, result = run({'targets': [target(T1, 'a'), target(T2, 'new')]})
    assert kind is FailJson
    assert 'target %s LUN 0: unknown vDisk new' % T2 in result['msg']
    assert host.view() == before  # checked before the first change


def test_discovery_auth_fails_after_targets_and_everything_is_put_back(host):
    before = host.view()
    host.fail_on(lambda op: op.endswith('enforce_discovery_auth'))
    kind, result = run({'targets': [target(T1, 'a')],
                        'discovery_auth': {'chap': {'userid': 'disc', 'password': 'disc-secret-0001'}}})
    assert kind is FailJson
    assert 'changing LIO failed at discovery authentication' in result['msg']
    host.heal()
    fabric = host.rtslib.FabricModule('iscsi')
    assert (fabric.discovery_userid, fabric.discovery_password) == ('', '')
    assert host.view() == before


def test_purge_deletes_unlisted_targets_but_not_from_under_a_logged_in_initiator(host, monkeypatch):
    assert run({'targets': [target(T1, 'a'), target(T2, 'b')]})[0] is ExitJson
    kind, result = run({'targets': [target(T1, 'a')]})
    assert kind is ExitJson and not result['changed']  # without purge, T2 is left alone
    # An initiator is logged in to T2: purge refuses, changes nothing.
    from ansible_collections.clusterducks.vdisk.tests.unit import rtslib_model
    monkeypatch.setattr(rtslib_model.NodeACL, 'session', property(lambda acl: {'state': 'LOGGED_IN'}))
    before = host.dump()
    kind, result = run({'targets': [target(T1, 'a')], 'purge': True})
    assert kind is FailJson and 'set force=true' in result['msg'] and INIT in result['msg']
    assert host.dump() == before
    kind, result = run({'targets': [target(T1, 'a')], 'purge': True}, check=True)
    assert kind is FailJson
    kind, result = run({'targets': [target(T1, 'a')], 'purge': True, 'force': True}, check=True)
    assert kind is ExitJson and result['changed'] and host.dump() == before
    assert [t['iqn'] for t in result['targets'] if t['actions']] == [T2]
    kind, result = run({'targets': [target(T1, 'a')], 'purge': True, 'force': True})
    assert kind is ExitJson and result['after'][T2] is None and result['before'][T2]['iqn'] == T2
    assert [t['wwn'] for t in saved(host)['targets']] == [T1]


@pytest.mark.parametrize('args', [
    {'targets': [target(T1, 'a')], 'luns': [{'lun': 0, 'vdisk': 'a'}]},
    {'targets': [target(T1, 'a')], 'portals': [{'ip': '10.0.0.1'}]},
    {'targets': [target(T1, 'a')], 'initiators': [{'iqn': INIT}]},
    {'iqn': T1, 'purge': True},
    {'discovery_auth': {'enabled': False}, 'purge': True},
])
def test_options_that_would_be_ignored_are_refused(host, args):
    before = host.dump()
    kind, result = run(args)
    assert kind is FailJson and host.dump() == before
