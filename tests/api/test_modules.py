# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The modules' main() against the live storage API (real HTTPS, real
SQLite): check mode, diff mode, idempotence, client-side validation."""

from __future__ import annotations

import json
import os
import stat

import pytest


from ansible_collections.clusterducks.vdisk.plugins.modules import assignment, device_token, storage_api_info
from ansible_collections.clusterducks.vdisk.tests.unit.module_harness import ExitJson, FailJson, patch_module_args, raise_on_exit

from apitest import ADMIN_TOKEN, PREFIX, T1


@pytest.fixture(autouse=True)
def module_exits(monkeypatch):
    raise_on_exit(monkeypatch)


@pytest.fixture(autouse=True)
def clean(clean_api):
    yield


@pytest.fixture
def run(service):
    def run_module(module, args, check=False, diff=False):
        args = dict(args, url=service.url, token=ADMIN_TOKEN, ca_path=service.ca,
                    _ansible_check_mode=check, _ansible_diff=diff)
        with patch_module_args(args):
            with pytest.raises((ExitJson, FailJson)) as excinfo:
                module.main()
        return excinfo.type is ExitJson, excinfo.value.args[0]
    return run_module


SEED = {'device': 'node01', 'vdisk': 'node01', 'mounts': {'0': 'data'},
        'overlayfs': {'enabled': True, 'upper': '/data/overlayfs', 'work': '/data/workdir'}}


def stored(service):
    return service.session().get(service.url + '/api/v1/assignments').json()['assignments']


def test_assignment_check_apply_idempotent(service, run):
    ok, result = run(assignment, SEED, check=True, diff=True)
    assert ok and result['changed'] is True
    assert result['diff']['before'] == {}
    assert result['diff']['after']['target'] == T1
    assert result['diff']['after']['initiator_iqn'] == PREFIX + ':node01'
    assert stored(service) == []  # check mode stored nothing

    ok, result = run(assignment, SEED, diff=True)
    assert ok and result['changed'] is True
    assert result['assignment']['revision'] == 1
    assert result['assignment']['overlayfs'] == {'enabled': True, 'lower': '/', 'upper': '/data/overlayfs',
                                                 'work': '/data/workdir'}

    for check in (False, True):  # idempotent, in both modes
        ok, result = run(assignment, SEED, check=check, diff=True)
        assert ok and result['changed'] is False, result
        assert result['diff']['before'] == result['diff']['after']
    assert stored(service)[0]['revision'] == 1

    ok, result = run(assignment, dict(SEED, frozen=False), check=True, diff=True)
    assert ok and result['changed'] is True
    assert (result['diff']['before']['frozen'], result['diff']['after']['frozen']) == (True, False)
    assert stored(service)[0]['frozen'] is True
    ok, result = run(assignment, dict(SEED, frozen=False))
    assert ok and result['changed'] is True and result['assignment']['revision'] == 2


def test_assignment_absent(service, run):
    assert run(assignment, SEED)[1]['changed'] is True
    ok, result = run(assignment, {'device': 'node01', 'state': 'absent'}, check=True, diff=True)
    assert ok and result['changed'] is True and result['diff']['after'] == {}
    assert len(stored(service)) == 1
    ok, result = run(assignment, {'device': 'node01', 'state': 'absent'})
    assert ok and result['changed'] is True
    ok, result = run(assignment, {'device': 'node01', 'state': 'absent'})
    assert ok and result['changed'] is False
    assert stored(service) == []


@pytest.mark.parametrize('args,message', [
    (dict(SEED, mounts={'0': '/data'}), 'relative'),
    (dict(SEED, mounts={'0': 'data/../etc'}), '..'),
    (dict(SEED, overlayfs={'enabled': True, 'upper': '/data/o', 'work': '/data/o/w'}), 'inside one another'),
    (dict(SEED, overlayfs={'enabled': True, 'upper': '/srv/o', 'work': '/data/w'}), 'not on a mounted'),
    (dict(SEED, device='Bad_Device'), 'device id'),
    (dict(SEED, vdisk='node02', mounts={'1': 'data', '7': 'x'}, overlayfs=None), 'no partition 7'),
    (dict(SEED, vdisk='nosuchdisk'), 'unknown vDisk'),
    (dict(SEED, vdisk='noacl'), 'does not map LUN'),  # only the API knows LIO: server-side check
])
def test_assignment_validation_fails_and_changes_nothing(service, run, args, message):
    for check in (True, False):
        ok, result = run(assignment, args, check=check)
        assert not ok and message in result['msg'], result
    assert stored(service) == []


def test_assignment_unreachable_api_fails_cleanly(run):
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    with patch_module_args(dict(SEED, url='https://127.0.0.1:%d' % port, token='x', timeout=2)):
        with pytest.raises(FailJson) as excinfo:
            assignment.main()
    assert 'cannot reach the storage API' in excinfo.value.args[0]['msg']


def test_device_token_once_then_idempotent(service, run, tmp_path):
    dest = str(tmp_path / 'node01.token')
    ok, result = run(device_token, {'device': 'node01', 'dest': dest}, check=True, diff=True)
    assert ok and result['changed'] is True and not os.path.exists(dest)

    ok, result = run(device_token, {'device': 'node01', 'dest': dest}, diff=True)
    assert ok and result['changed'] is True and 'token' not in result
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    with open(dest, encoding='utf-8') as handle:
        secret = handle.read().strip()
    assert secret.startswith('cdv1.' + result['metadata']['id'])
    assert secret not in json.dumps(result)

    ok, result = run(device_token, {'device': 'node01', 'dest': dest})
    assert ok and result['changed'] is False and 'token' not in result

    # The token opens node01's boot record, and only that.
    assert run(assignment, SEED)[0]
    device = service.session(secret)
    assert device.get(service.url + '/api/v1/boot/node01').json()['device'] == 'node01'
    assert device.get(service.url + '/api/v1/boot/node02').status_code == 403

    ok, result = run(device_token, {'device': 'node01', 'dest': dest, 'regenerate': True})
    assert ok and result['changed'] is True
    assert device.get(service.url + '/api/v1/boot/node01').status_code == 401  # the old one is revoked

    ok, result = run(device_token, {'device': 'node01', 'state': 'absent'})
    assert ok and result['changed'] is True
    ok, result = run(device_token, {'device': 'node01', 'state': 'absent'})
    assert ok and result['changed'] is False


def test_device_token_returned_without_dest(run):
    ok, result = run(device_token, {'device': 'node02', 'name': 'second'})
    assert ok and result['changed'] is True and result['token'].startswith('cdv1.')


def test_storage_api_info(service, run):
    assert run(assignment, SEED)[0]
    assert run(device_token, {'device': 'node01'})[0]
    ok, result = run(storage_api_info, {}, check=True)
    assert ok and result['changed'] is False
    assert [a['device'] for a in result['assignments']] == ['node01']
    assert [(t['device'], t['name']) for t in result['tokens']] == [('node01', 'default')]
    assert 'cdv1.' not in json.dumps(result['tokens'])
    assert {v['name']: v['assigned_to'] for v in result['vdisks']}['node01'] == 'node01'
    ok, result = run(storage_api_info, {'gather_subset': ['assignments'], 'device': 'node02'})
    assert ok and result['assignments'] == [] and 'vdisks' not in result


def test_wrong_admin_token(service):
    with patch_module_args({'url': service.url, 'token': 'wrong', 'ca_path': service.ca}):
        with pytest.raises(FailJson) as excinfo:
            storage_api_info.main()
    assert excinfo.value.args[0]['status'] == 401


def test_overlay_enabled_default_agrees_with_the_api(service, run):
    """Omitting overlayfs.enabled means what the shared rule (and so the API) says, in the module too."""
    from ansible.module_utils.common.warnings import get_warning_messages  # pylint: disable=import-outside-toplevel
    from ansible_collections.clusterducks.vdisk.plugins.module_utils import rules  # pylint: disable=import-outside-toplevel
    rule_default = rules.normalize_overlay({}, {})['enabled']
    assert assignment.OVERLAY_ENABLED_DEFAULT is rule_default
    assert 'default' not in assignment.argument_spec()['overlayfs']['options']['enabled']  # no default of its own
    body = {'vdisk': 'node01', 'mounts': {'0': 'data'},
            'overlayfs': {'upper': '/data/overlayfs', 'work': '/data/workdir'}}
    admin = service.session()
    api_default = admin.put(service.url + '/api/v1/assignments/node01', params={'dry_run': '1'},
                            json=body).json()['assignment']['overlayfs']['enabled']
    assert api_default is rule_default is False

    ok, result = run(assignment, dict(body, device='node01'))
    assert ok and result['assignment']['overlayfs']['enabled'] is api_default, result
    assert any('overlayfs.enabled' in w for w in get_warning_messages())
    # The API, given the same body, sees nothing to change; nor does the module with the default spelled out.
    assert admin.put(service.url + '/api/v1/assignments/node01', json=body).json()['changed'] is False
    body['overlayfs']['enabled'] = rule_default
    ok, result = run(assignment, dict(body, device='node01'))
    assert ok and result['changed'] is False
    # Without overlayfs at all: the same.
    ok, result = run(assignment, {'device': 'node01', 'vdisk': 'node01', 'mounts': {'0': 'data'}})
    assert ok and result['changed'] is True and result['assignment']['overlayfs']['enabled'] is api_default


def test_assignment_before_after_in_every_mode(service, run):
    for check in (True, False):
        ok, result = run(assignment, SEED, check=check)
        assert ok and result['changed'] is True and 'diff' not in result
        assert result['before'] is None
        assert result['after']['target'] == T1 and result['after']['overlayfs']['enabled'] is True
        assert set(result['after']) == {'device', 'vdisk', 'target', 'initiator_iqn', 'overlayfs', 'mounts', 'frozen'}
    ok, result = run(assignment, dict(SEED, frozen=False))
    assert ok and (result['before']['frozen'], result['after']['frozen']) == (True, False)
    ok, result = run(assignment, dict(SEED, frozen=False), diff=True)
    assert ok and result['changed'] is False and result['before'] == result['after']
    assert result['diff'] == {'before': result['before'], 'after': result['after']}
    ok, result = run(assignment, {'device': 'node01', 'state': 'absent'})
    assert ok and result['before']['vdisk'] == 'node01' and result['after'] is None
    ok, result = run(assignment, {'device': 'node01', 'state': 'absent'})
    assert ok and result['changed'] is False and result['before'] is None and result['after'] is None


@pytest.mark.parametrize('args,expected', [
    ({}, {'assignments', 'tokens', 'vdisks'}),
    ({'gather_subset': ['all']}, {'assignments', 'tokens', 'vdisks'}),
    ({'gather_subset': ['tokens']}, {'tokens'}),
    ({'gather_subset': ['tokens', 'vdisks']}, {'tokens', 'vdisks'}),
    ({'gather_subset': ['!vdisks']}, {'assignments', 'tokens'}),
    ({'gather_subset': ['all', '!tokens']}, {'assignments', 'vdisks'}),
    ({'gather_subset': ['tokens', '!tokens']}, set()),
    ({'gather': ['assignments']}, {'assignments'}),  # the deprecated alias still works
])
def test_storage_api_info_gather_subset(run, args, expected):
    ok, result = run(storage_api_info, args)
    assert ok, result
    assert set(result) - {'changed'} == expected


def test_storage_api_info_gather_is_deprecated(run):
    from ansible.module_utils.common.warnings import get_deprecation_messages  # pylint: disable=import-outside-toplevel
    assert run(storage_api_info, {'gather': ['tokens']})[0]
    assert any("'gather'" in d['msg'] and d.get('version') == '2.0.0' for d in get_deprecation_messages())


def test_storage_api_info_gather_subset_choices(run):
    ok, result = run(storage_api_info, {'gather_subset': ['secrets']})
    assert not ok and 'gather_subset' in result['msg']
