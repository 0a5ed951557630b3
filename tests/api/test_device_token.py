# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""clusterducks.vdisk.device_token against the live storage API: a token file
(dest) that no longer holds the device's token, and rotation that never
leaves the device without a valid token."""

from __future__ import annotations

import errno
import json
import os
import stat

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import api_client
from ansible_collections.clusterducks.vdisk.plugins.modules import device_token
from ansible_collections.clusterducks.vdisk.tests.unit.module_harness import ExitJson, FailJson, patch_module_args, raise_on_exit

from apitest import ADMIN_TOKEN


@pytest.fixture(autouse=True)
def module_exits(monkeypatch):
    raise_on_exit(monkeypatch)


@pytest.fixture(autouse=True)
def clean(clean_api):
    yield


@pytest.fixture
def run(service):
    def run_module(args, check=False, diff=False):
        args = dict(args, url=service.url, token=ADMIN_TOKEN, ca_path=service.ca,
                    _ansible_check_mode=check, _ansible_diff=diff)
        with patch_module_args(args):
            with pytest.raises((ExitJson, FailJson)) as excinfo:
                device_token.main()
        return excinfo.type is ExitJson, excinfo.value.args[0]
    return run_module


def tokens(service, device='node01'):
    return service.session().get(service.url + '/api/v1/tokens', params={'device': device}).json()['tokens']


def valid(service, secret, device='node01'):
    """Whether the API accepts the token for the device's boot record (404: no assignment, but authenticated)."""
    status = service.session(secret).get(service.url + '/api/v1/boot/' + device).status_code
    assert status in (200, 401, 404), status
    return status != 401


def read(path):
    with open(path, encoding='utf-8') as handle:
        return handle.read().strip()


@pytest.fixture
def issued(run, tmp_path):
    """node01 has a token, written to dest."""
    dest = str(tmp_path / 'node01.token')
    ok, result = run({'device': 'node01', 'dest': dest})
    assert ok and result['changed'] is True, result
    return dest, read(dest), result['metadata']


def spoil_missing(dest):
    os.unlink(dest)


def spoil_empty(dest):
    open(dest, 'w').close()  # pylint: disable=consider-using-with


def spoil_malformed(dest):
    with open(dest, 'w', encoding='utf-8') as handle:
        handle.write('not a token\n')


def spoil_other_id(dest):
    with open(dest, 'w', encoding='utf-8') as handle:
        handle.write('cdv1.0123456789abcdef.%s\n' % ('A' * 43))


def spoil_wrong_secret(dest):
    token_id = read(dest).split('.')[1]
    with open(dest, 'w', encoding='utf-8') as handle:
        handle.write('cdv1.%s.%s\n' % (token_id, 'A' * 43))


def spoil_unreadable(dest):
    # A symlink loop: open() fails with ELOOP even for root.
    os.unlink(dest)
    os.symlink(os.path.basename(dest), dest)


@pytest.mark.parametrize('spoil,state', [
    (spoil_missing, 'missing'),
    (spoil_empty, 'empty'),
    (spoil_malformed, 'malformed'),
    (spoil_other_id, 'other_token'),
    (spoil_wrong_secret, 'rejected'),
    (spoil_unreadable, 'unreadable'),
])
def test_dest_without_the_token_gets_a_new_one(service, run, issued, spoil, state):
    dest, old_secret, old_meta = issued
    spoil(dest)
    listed = tokens(service)

    ok, result = run({'device': 'node01', 'dest': dest}, check=True, diff=True)
    assert ok and result['changed'] is True, result
    assert dest in result['msg'] and 'new token' in result['msg']
    assert result['before']['dest'] == state and result['after']['dest'] == 'current'
    assert result['diff']['before']['dest'] == state
    assert tokens(service) == listed and valid(service, old_secret)  # check mode changed nothing

    ok, result = run({'device': 'node01', 'dest': dest})
    assert ok and result['changed'] is True, result
    assert dest in result['msg'] and device_token.DEST_STATES[state] in result['msg']
    new_secret = read(dest)
    assert stat.S_IMODE(os.lstat(dest).st_mode) == 0o600 and not os.path.islink(dest)
    assert new_secret.startswith('cdv1.%s.' % result['metadata']['id'])
    assert result['metadata']['id'] != old_meta['id']
    assert new_secret not in json.dumps(result) and 'token' not in result
    assert valid(service, new_secret)
    assert not valid(service, old_secret)  # one token per name: the lost one is revoked
    assert [t['id'] for t in tokens(service)] == [result['metadata']['id']]

    ok, result = run({'device': 'node01', 'dest': dest})
    assert ok and result['changed'] is False, result
    assert result['before']['dest'] == result['after']['dest'] == 'current'


def test_regenerate_keeps_the_old_token_when_creating_fails(service, run, issued, monkeypatch):
    dest, old_secret, _old_meta = issued

    def refuse(*_args, **_kwargs):
        raise api_client.ApiError('storage API answered 500 to POST /tokens: injected', status=500)
    monkeypatch.setattr(api_client.ApiClient, 'create_token', refuse)
    ok, result = run({'device': 'node01', 'dest': dest, 'regenerate': True})
    assert not ok and 'injected' in result['msg']
    assert valid(service, old_secret) and read(dest) == old_secret
    assert len(tokens(service)) == 1


def test_regenerate_keeps_the_old_token_when_dest_cannot_be_written(service, run, issued, monkeypatch):
    dest, old_secret, old_meta = issued

    def disk_full(_path, _secret):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(device_token, 'write_secret', disk_full)
    ok, result = run({'device': 'node01', 'dest': dest, 'regenerate': True})
    assert not ok and 'No space left' in result['msg'] and old_meta['id'] in result['msg']
    assert valid(service, old_secret) and read(dest) == old_secret
    # The new token was revoked again; the old one is the named token again.
    assert [(t['id'], t['replaced_by']) for t in tokens(service)] == [(old_meta['id'], None)]
    monkeypatch.undo()
    raise_on_exit(monkeypatch)
    ok, result = run({'device': 'node01', 'dest': dest})
    assert ok and result['changed'] is False, result


def test_regenerate_when_revoking_the_old_token_fails(service, run, issued, monkeypatch):
    dest, old_secret, old_meta = issued

    def unreachable(*_args, **_kwargs):
        raise api_client.ApiError('cannot reach the storage API: injected')
    monkeypatch.setattr(api_client.ApiClient, 'delete_token', unreachable)
    ok, result = run({'device': 'node01', 'dest': dest, 'regenerate': True})
    assert not ok and old_meta['id'] in result['msg'] and 'injected' in result['msg']
    new_secret = read(dest)
    assert new_secret != old_secret and result['dest'] == dest
    assert valid(service, new_secret) and valid(service, old_secret)  # never none: both, for now
    current = [t for t in tokens(service) if t['replaced_by'] is None]
    assert [t['id'] for t in current] == [new_secret.split('.')[1]]

    # Run again (the API reachable): the interrupted rotation is finished.
    monkeypatch.undo()
    raise_on_exit(monkeypatch)
    ok, result = run({'device': 'node01', 'dest': dest})
    assert ok and result['changed'] is True and old_meta['id'] in result['msg'], result
    assert valid(service, new_secret) and not valid(service, old_secret)
    ok, result = run({'device': 'node01', 'dest': dest})
    assert ok and result['changed'] is False, result


def test_regenerate_order(service, run, issued):
    dest, old_secret, old_meta = issued
    ok, result = run({'device': 'node01', 'dest': dest, 'regenerate': True}, check=True)
    assert ok and result['changed'] is True and valid(service, old_secret) and read(dest) == old_secret
    ok, result = run({'device': 'node01', 'dest': dest, 'regenerate': True})
    assert ok and result['changed'] is True
    assert result['before']['id'] == old_meta['id'] and result['after']['id'] == result['metadata']['id']
    assert valid(service, read(dest)) and not valid(service, old_secret)


def test_before_after_always_and_masked(service, run, tmp_path):
    ok, result = run({'device': 'node02', 'name': 'second'})
    assert ok and result['changed'] is True
    secret = result['token']
    assert result['before'] is None
    assert result['after']['id'] == result['metadata']['id'] and result['after']['secret'] == '******** (new)'
    assert 'diff' not in result
    ok, result = run({'device': 'node02', 'name': 'second'}, diff=True)
    assert ok and result['changed'] is False
    assert result['before'] == result['after'] and result['after']['secret'] == '********'
    assert result['diff'] == {'before': result['before'], 'after': result['after']}
    ok, result = run({'device': 'node02', 'name': 'second', 'state': 'absent'})
    assert ok and result['changed'] is True and result['after'] is None and result['before']['name'] == 'second'
    assert not valid(service, secret, 'node02')
    assert secret.split('.')[2] not in json.dumps(result)


def test_interrupted_rotation_without_dest_is_only_reported(service, run):
    from ansible.module_utils.common.warnings import get_warning_messages  # pylint: disable=import-outside-toplevel
    admin = service.session()
    old = admin.post(service.url + '/api/v1/tokens', json={'device': 'node01'}).json()
    new = admin.post(service.url + '/api/v1/tokens', json={'device': 'node01', 'replaces': old['token']['id']}).json()
    ok, result = run({'device': 'node01'})
    assert ok and result['changed'] is False and result['before']['replaced_tokens'] == [old['token']['id']]
    assert any(old['token']['id'] in w and 'regenerate' in w for w in get_warning_messages())
    assert valid(service, old['secret']) and valid(service, new['secret'])
    ok, result = run({'device': 'node01', 'regenerate': True})
    assert ok and result['changed'] is True and result['after']['replaced_tokens'] == []
    assert not valid(service, old['secret']) and not valid(service, new['secret']) and valid(service, result['token'])
    assert [t['id'] for t in tokens(service)] == [result['metadata']['id']]


def test_absent_revokes_an_interrupted_rotation_too(service, run):
    admin = service.session()
    old = admin.post(service.url + '/api/v1/tokens', json={'device': 'node01'}).json()
    new = admin.post(service.url + '/api/v1/tokens', json={'device': 'node01', 'replaces': old['token']['id']}).json()
    ok, result = run({'device': 'node01', 'state': 'absent'}, check=True)
    assert ok and result['changed'] is True and len(tokens(service)) == 2
    ok, result = run({'device': 'node01', 'state': 'absent'})
    assert ok and result['changed'] is True and result['after'] is None
    assert tokens(service) == [] and not valid(service, old['secret']) and not valid(service, new['secret'])


def test_dest_is_a_directory(run, tmp_path):
    ok, result = run({'device': 'node01', 'dest': str(tmp_path)})
    assert not ok and 'directory' in result['msg']


@pytest.mark.parametrize('name', ['a/b', 'x\n', 'ok name', '-x', 'n' * 64])
def test_token_name_refused_before_any_request(run, name):
    ok, result = run({'device': 'node01', 'name': name})
    assert not ok and result['msg'].startswith('token name'), result  # not the API's 422
