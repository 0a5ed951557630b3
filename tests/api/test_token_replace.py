# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Token rotation in the API: POST /tokens with "replaces" issues the new
token while the old one stays valid, so that a client can deliver the new
one before it revokes the old one. And the schema migration that allows it."""

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest

from apitest import Service


@pytest.fixture(autouse=True)
def clean(clean_api):
    yield


def api(service, path):
    return service.url + '/api/v1' + path


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.json()['error']['code'] == code


def create(admin, service, **body):
    return admin.post(api(service, '/tokens'), json=body)


def valid(service, secret, device='node01'):
    status = service.session(secret).get(api(service, '/boot/' + device)).status_code
    assert status in (401, 404), status  # no assignment: 404 once authenticated
    return status == 404


def listed(admin, service):
    return {t['id']: t['replaced_by'] for t in admin.get(api(service, '/tokens')).json()['tokens']}


def test_replace_keeps_the_old_token_valid_until_revoked(service, admin):
    first = create(admin, service, device='node01', name='boot').json()
    assert first['token']['replaced_by'] is None
    response = create(admin, service, device='node01', name='boot', replaces=first['token']['id'])
    assert response.status_code == 201, response.text
    assert response.headers['Cache-Control'] == 'no-store'
    second = response.json()
    assert second['token']['name'] == 'boot' and second['token']['replaced_by'] is None
    old_id, new_id = first['token']['id'], second['token']['id']
    assert listed(admin, service) == {old_id: new_id, new_id: None}
    assert admin.get(api(service, '/tokens/' + old_id)).json()['token']['replaced_by'] == new_id
    assert valid(service, first['secret']) and valid(service, second['secret'])
    # Without "replaces" the name is still taken.
    assert_error(create(admin, service, device='node01', name='boot'), 409, 'conflict')
    # Revoking the replaced token: the new one stays the named token.
    assert admin.delete(api(service, '/tokens/' + old_id)).status_code == 204
    assert listed(admin, service) == {new_id: None}
    assert not valid(service, first['secret']) and valid(service, second['secret'])


def test_revoking_the_replacement_gives_the_name_back(service, admin):
    first = create(admin, service, device='node01', name='boot').json()
    second = create(admin, service, device='node01', name='boot', replaces=first['token']['id']).json()
    assert admin.delete(api(service, '/tokens/' + second['token']['id'])).status_code == 204
    assert listed(admin, service) == {first['token']['id']: None}
    assert valid(service, first['secret']) and not valid(service, second['secret'])
    # The name is the old token's again: it can be replaced again.
    third = create(admin, service, device='node01', name='boot', replaces=first['token']['id'])
    assert third.status_code == 201


def test_chain_of_interrupted_rotations(service, admin):
    one = create(admin, service, device='node01').json()['token']['id']
    two = create(admin, service, device='node01', replaces=one).json()['token']['id']
    three = create(admin, service, device='node01', replaces=two).json()['token']['id']
    assert listed(admin, service) == {one: two, two: three, three: None}
    assert admin.delete(api(service, '/tokens/' + two)).status_code == 204
    assert listed(admin, service) == {one: three, three: None}
    assert admin.delete(api(service, '/tokens/' + three)).status_code == 204
    assert listed(admin, service) == {one: None}


@pytest.mark.parametrize('body_of', [
    lambda old, other: {'device': 'node01', 'name': 'other', 'replaces': old},   # another name
    lambda old, other: {'device': 'node02', 'name': 'boot', 'replaces': old},    # another device
    lambda old, other: {'device': 'node01', 'name': 'boot', 'replaces': '0123456789abcdef'},  # no such token
    lambda old, other: {'device': 'node01', 'name': 'boot', 'replaces': other},  # already replaced
])
def test_replace_conflicts_change_nothing(service, admin, body_of):
    old = create(admin, service, device='node01', name='boot').json()['token']['id']
    older = create(admin, service, device='node01', name='x').json()['token']['id']
    newer = create(admin, service, device='node01', name='x', replaces=older).json()['token']['id']
    before = listed(admin, service)
    assert_error(create(admin, service, **body_of(old, older)), 409, 'conflict')
    assert listed(admin, service) == before == {old: None, older: newer, newer: None}


@pytest.mark.parametrize('replaces', ['', 'ABCDEF0123456789', '0123', 5, None, '../../x'])
def test_replace_malformed(service, admin, replaces):
    assert_error(create(admin, service, device='node01', replaces=replaces), 422, 'invalid_token_request')
    assert listed(admin, service) == {}


def _v1_database(path):
    """A database as the first release of the service left it, with one token."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL);
        INSERT INTO schema_version VALUES (1, '2025-01-01T00:00:00Z');
        CREATE TABLE assignments (device TEXT PRIMARY KEY, vdisk TEXT NOT NULL UNIQUE, target TEXT NOT NULL,
            initiator_iqn TEXT NOT NULL UNIQUE, overlay_enabled INTEGER NOT NULL, overlay_lower TEXT NOT NULL,
            overlay_upper TEXT, overlay_work TEXT, mounts TEXT NOT NULL, frozen INTEGER NOT NULL,
            revision INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE TABLE device_tokens (id TEXT PRIMARY KEY, device TEXT NOT NULL, name TEXT NOT NULL,
            secret_sha256 BLOB NOT NULL, created_at TEXT NOT NULL, UNIQUE (device, name));
    """)
    conn.execute("INSERT INTO device_tokens VALUES ('00112233445566aa', 'node01', 'default', ?, "
                 "'2025-01-01T00:00:00Z')", (hashlib.sha256(b'oldsecret').digest(),))
    conn.commit()
    conn.close()


def test_migration_from_schema_1_keeps_tokens(tmp_path, pki):
    svc = Service(str(tmp_path), pki, workers=1)
    os.makedirs(os.path.dirname(svc.db))
    _v1_database(svc.db)
    svc.start()
    try:
        admin = svc.session()
        assert admin.get(api(svc, '/tokens')).json()['tokens'] == [
            {'id': '00112233445566aa', 'device': 'node01', 'name': 'default', 'created_at': '2025-01-01T00:00:00Z',
             'replaced_by': None}]
        assert valid(svc, 'cdv1.00112233445566aa.oldsecret')
        assert_error(create(admin, svc, device='node01'), 409, 'conflict')
        assert create(admin, svc, device='node01', replaces='00112233445566aa').status_code == 201
    finally:
        svc.stop()
    conn = sqlite3.connect(svc.db)
    try:
        assert conn.execute('SELECT MAX(version) FROM schema_version').fetchone()[0] == 2
    finally:
        conn.close()
