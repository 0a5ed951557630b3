# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The storage API over real HTTPS on 127.0.0.1: every endpoint, auth rule,
validation and limit. Each test leaves the database as it found it."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time

import pytest
import requests

from apitest import ADMIN_TOKEN, ADMIN_TOKEN_2, PREFIX, T1, T2, saveconfig

SEED = {'vdisk': 'node01', 'mounts': {'0': 'data'},
        'overlayfs': {'enabled': True, 'lower': '/', 'upper': '/data/overlayfs', 'work': '/data/workdir'}}


@pytest.fixture(autouse=True)
def clean(clean_api):
    yield


def api(service, path):
    return service.url + '/api/v1' + path


def assert_error(response, status, code=None):
    assert response.status_code == status, response.text
    assert response.headers['Content-Type'] == 'application/json'
    error = response.json()['error']
    assert error['message']
    if code is not None:
        assert error['code'] == code
    return error['message']


def put(admin, service, device, body, **kw):
    return admin.put(api(service, '/assignments/' + device), json=body, **kw)


def token_for(admin, service, device, name='default'):
    response = admin.post(api(service, '/tokens'), json={'device': device, 'name': name})
    assert response.status_code == 201, response.text
    return response.json()['secret']


def stored(admin, service):
    return admin.get(api(service, '/assignments')).json()['assignments']


# -- health and metrics ------------------------------------------------------

def test_healthz_needs_no_token(service):
    response = service.session(token=None).get(service.url + '/healthz')
    assert response.status_code == 200
    assert response.json()['status'] == 'ok'
    assert response.json()['lio_save_file'] is True


def test_metrics_prometheus_text(service, admin):
    assert put(admin, service, 'node01', SEED).status_code == 201
    service.session(token=None).get(api(service, '/assignments'))
    text = service.session(token=None).get(service.url + '/metrics').text
    assert '# TYPE vdisk_api_requests_total counter' in text
    assert 'vdisk_api_requests_total{route="assignment",status="201"}' in text
    assert 'vdisk_api_requests_total{route="assignments",status="401"}' in text
    assert 'vdisk_api_request_duration_seconds_bucket{route="assignment",le="+Inf"}' in text
    writes = [line for line in text.splitlines() if line.startswith('vdisk_api_db_writes_total ')]
    assert writes and int(writes[0].split()[1]) >= 1


# -- authentication: 401, 403, 404 are distinct ------------------------------

@pytest.mark.parametrize('header', [None, 'Bearer wrong-token', 'Basic YWRtaW46YWRtaW4=', 'Bearer ',
                                    'Bearer cdv1.0123456789abcdef.forged'])
def test_401_without_a_valid_token(service, header):
    session = service.session(token=None)
    if header is not None:
        session.headers['Authorization'] = header
    for path in ('/assignments', '/tokens', '/vdisks', '/boot/node01', '/assignments/node01'):
        response = session.get(api(service, path))
        assert_error(response, 401, 'unauthenticated')
        assert response.headers['WWW-Authenticate'].startswith('Bearer')


def test_second_admin_token_stored_as_hash(service):
    assert service.session(ADMIN_TOKEN_2).get(api(service, '/assignments')).status_code == 200


def test_admin_token_file_is_reread(service):
    with open(service.admin_file, encoding='utf-8') as handle:
        original = handle.read()
    try:
        time.sleep(0.01)
        with open(service.admin_file, 'a', encoding='utf-8') as handle:
            handle.write('rotated-admin-token-123456\n')
        assert service.session('rotated-admin-token-123456').get(api(service, '/vdisks')).status_code == 200
    finally:
        with open(service.admin_file, 'w', encoding='utf-8') as handle:
            handle.write(original)
    assert service.session('rotated-admin-token-123456').get(api(service, '/vdisks')).status_code == 401


@pytest.mark.parametrize('breakage', ['missing', 'empty', 'world-readable', 'a directory', 'comments only'])
def test_admin_credential_fails_closed(service, breakage):
    # Deleting the file, emptying it or opening it to others must end admin
    # access at once, not leave the last tokens working.
    with open(service.admin_file, encoding='utf-8') as handle:
        original = handle.read()
    url = api(service, '/vdisks')
    assert service.session().get(url).status_code == 200
    try:
        time.sleep(0.01)
        if breakage == 'missing':
            os.unlink(service.admin_file)
        elif breakage == 'empty':
            open(service.admin_file, 'w').close()
        elif breakage == 'comments only':
            with open(service.admin_file, 'w', encoding='utf-8') as handle:
                handle.write('# nobody\n\n')
        elif breakage == 'world-readable':
            os.chmod(service.admin_file, 0o644)
        else:
            os.unlink(service.admin_file)
            os.mkdir(service.admin_file, 0o700)
        assert service.session().get(url).status_code == 401
        assert service.session(ADMIN_TOKEN_2).get(url).status_code == 401
        assert 'admin access is off' in service.read_log()
    finally:
        if os.path.isdir(service.admin_file):
            os.rmdir(service.admin_file)
        with open(service.admin_file, 'w', encoding='utf-8') as handle:
            handle.write(original)
        os.chmod(service.admin_file, 0o600)
    assert service.session().get(url).status_code == 200


def test_tls12_offers_only_forward_secret_aead_suites(service):
    def handshake(ciphers):
        context = ssl.create_default_context(cafile=service.ca)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)
        with socket.create_connection(('127.0.0.1', service.port), timeout=5) as raw:
            try:
                with context.wrap_socket(raw, server_hostname='127.0.0.1') as tls:
                    return tls.cipher()[0]
            except ssl.SSLError:
                return None

    for weak in ('ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA', 'ECDHE-ECDSA-AES128-SHA256', 'AES128-SHA'):
        assert handshake(weak) is None, weak
    assert handshake('ECDHE-ECDSA-AES128-GCM-SHA256') == 'ECDHE-ECDSA-AES128-GCM-SHA256'
    assert handshake('ECDHE-ECDSA-CHACHA20-POLY1305') == 'ECDHE-ECDSA-CHACHA20-POLY1305'


def test_device_token_is_403_on_management(service, admin):
    device = service.session(token_for(admin, service, 'node01'))
    for method, path in (('GET', '/assignments'), ('GET', '/assignments/node01'), ('PUT', '/assignments/node01'),
                         ('DELETE', '/assignments/node01'), ('GET', '/tokens'), ('POST', '/tokens'),
                         ('GET', '/vdisks'), ('GET', '/vdisks/node01')):
        response = device.request(method, api(service, path), json=SEED)
        assert_error(response, 403, 'forbidden')
    assert stored(admin, service) == []


def test_404s(service, admin):
    assert_error(admin.get(service.url + '/nope'), 404, 'not_found')
    assert_error(admin.get(api(service, '/nope')), 404, 'not_found')
    assert_error(admin.get(service.url + '/api/v2/assignments'), 404, 'not_found')
    assert_error(admin.get(api(service, '/assignments/node01/extra')), 404, 'not_found')
    assert_error(admin.get(api(service, '/assignments/node01')), 404, 'not_found')
    assert_error(admin.delete(api(service, '/assignments/node01')), 404, 'not_found')
    assert_error(admin.get(api(service, '/tokens/0123456789abcdef')), 404, 'not_found')
    assert_error(admin.delete(api(service, '/tokens/0123456789abcdef')), 404, 'not_found')
    assert_error(admin.get(api(service, '/vdisks/nosuchdisk')), 404, 'not_found')
    # A device with a token but no assignment.
    device = service.session(token_for(admin, service, 'node09'))
    assert 'no assignment' in assert_error(device.get(api(service, '/boot/node09')), 404, 'not_found')


def test_405_lists_allowed_methods(service, admin):
    response = admin.post(api(service, '/assignments/node01'), json=SEED)
    assert_error(response, 405, 'method_not_allowed')
    assert response.headers['Allow'] == 'GET, PUT, DELETE'
    assert_error(admin.delete(service.url + '/healthz'), 405)


# -- assignments -----------------------------------------------------------

def test_assignment_lifecycle(service, admin):
    response = put(admin, service, 'node01', SEED)
    assert response.status_code == 201, response.text
    record = response.json()['assignment']
    assert response.json()['changed'] is True
    assert record['target'] == T1  # resolved: the only target exporting node01
    assert record['initiator_iqn'] == PREFIX + ':node01'  # default derived from the device
    assert record['frozen'] is True
    assert record['revision'] == 1
    assert record['mounts'] == {'0': 'data'}
    # Same declaration again: 200, nothing written.
    again = put(admin, service, 'node01', dict(SEED, target=T1))
    assert again.status_code == 200 and again.json()['changed'] is False
    assert again.json()['assignment']['revision'] == 1
    # A change bumps the revision.
    changed = put(admin, service, 'node01', dict(SEED, frozen=False))
    assert changed.status_code == 200 and changed.json()['assignment']['revision'] == 2
    assert admin.get(api(service, '/assignments/node01')).json()['assignment']['frozen'] is False
    assert [a['device'] for a in stored(admin, service)] == ['node01']
    assert admin.get(api(service, '/assignments'), params={'device': 'node01'}).json()['assignments'][0]['revision'] == 2
    assert admin.delete(api(service, '/assignments/node01')).status_code == 204
    assert stored(admin, service) == []


def test_dry_run_stores_nothing(service, admin):
    response = put(admin, service, 'node01', SEED, params={'dry_run': '1'})
    assert response.status_code == 200 and response.json()['dry_run'] is True
    assert response.json()['assignment']['target'] == T1
    assert stored(admin, service) == []
    assert_error(put(admin, service, 'node01', dict(SEED, mounts={'0': '/data'}), params={'dry_run': '1'}), 422)


def _partitioned(**overrides):
    body = {'vdisk': 'node02', 'mounts': {'1': 'data', '2': 'data/sub'},
            'overlayfs': {'enabled': True, 'upper': '/data/upper', 'work': '/data/work'}}
    body.update(overrides)
    return body


INVALID = [
    ('absolute mount path', 'node01', dict(SEED, mounts={'0': '/data'}), 'relative'),
    ('dot-dot', 'node01', dict(SEED, mounts={'0': 'data/../etc'}), '..'),
    ('dot', 'node01', dict(SEED, mounts={'0': './data'}), '"."'),
    ('empty component', 'node01', dict(SEED, mounts={'0': 'data//x'}), 'empty'),
    ('trailing slash', 'node01', dict(SEED, mounts={'0': 'data/'}), 'empty'),
    ('shell metacharacters', 'node01', dict(SEED, mounts={'0': 'da$(reboot)ta'}), 'components'),
    ('duplicate path', 'node02', _partitioned(mounts={'1': 'data', '2': 'data'}), 'unique'),
    ('non-numeric key', 'node01', dict(SEED, mounts={'sdb1': 'data'}), 'partition number'),
    ('repeated key', 'node02', _partitioned(mounts={'1': 'data', '01': 'other'}), 'repeats'),
    ('missing partition', 'node02', _partitioned(mounts={'1': 'data', '4': 'more'}), 'no partition 4'),
    ('partition without fs', 'node02', _partitioned(mounts={'1': 'data', '3': 'raw'}), 'no filesystem'),
    ('whole disk of partitioned', 'node02', _partitioned(mounts={'0': 'data'}), 'partitioned'),
    ('0 with partitions', 'node02', _partitioned(mounts={'0': 'data', '1': 'x'}), 'whole-disk'),
    ('overlay without upper', 'node01', dict(SEED, overlayfs={'enabled': True, 'work': '/data/w'}), 'required'),
    ('upper not mounted', 'node01', dict(SEED, overlayfs={'enabled': True, 'upper': '/var/up', 'work': '/data/w'}),
     'not on a mounted'),
    ('upper relative', 'node01', dict(SEED, overlayfs={'enabled': True, 'upper': 'data/up', 'work': '/data/w'}),
     'absolute'),
    ('different filesystems', 'node02',
     _partitioned(overlayfs={'enabled': True, 'upper': '/data/sub/upper', 'work': '/data/work'}), 'same filesystem'),
    ('work inside upper', 'node01', dict(SEED, overlayfs={'enabled': True, 'upper': '/data/o', 'work': '/data/o/w'}),
     'inside one another'),
    ('upper is the mountpoint', 'node01', dict(SEED, overlayfs={'enabled': True, 'upper': '/data', 'work': '/data/w'}),
     'mountpoint itself'),
    ('unknown overlay key', 'node01', dict(SEED, overlayfs={'enabled': True, 'uper': '/data/o'}), 'unknown keys'),
    ('unknown field', 'node01', dict(SEED, colour='blue'), 'unknown assignment fields'),
    ('frozen not bool', 'node01', dict(SEED, frozen='yes'), 'boolean'),
    ('bad initiator', 'node01', dict(SEED, initiator_iqn='node01'), 'qualified name'),
    ('bad vdisk name', 'node01', dict(SEED, vdisk='../node01'), 'vDisk name'),
    ('missing vdisk', 'node01', {'mounts': {}}, 'vdisk is required'),
    ('body device differs', 'node01', dict(SEED, device='node02'), 'differs'),
    ('unknown vdisk', 'node01', dict(SEED, vdisk='nosuchdisk'), 'unknown vDisk'),
    ('vdisk without storage object', 'node01', dict(SEED, vdisk='unexported'), 'no LIO storage object'),
    ('vdisk not exported', 'node01', dict(SEED, vdisk='lonely'), 'not exported'),
    ('ambiguous target', 'node01', dict(SEED, vdisk='shared'), 'several targets'),
    ('target does not export', 'node01', dict(SEED, target=T2), 'does not export'),
    ('unknown target', 'node01', dict(SEED, target='iqn.2003-01.org.example:nope'), 'does not exist'),
    ('ACL does not map the vDisk', 'node01', dict(SEED, vdisk='noacl'), 'does not map LUN'),
    ('ACL for another initiator', 'node01', dict(SEED, initiator_iqn='iqn.2005-03.org.open-iscsi:other'),
     'no ACL for initiator'),
]


@pytest.mark.parametrize('device,body,message', [i[1:] for i in INVALID], ids=[i[0] for i in INVALID])
def test_invalid_assignment_is_422_and_changes_nothing(service, admin, device, body, message):
    assert put(admin, service, 'node03', {'vdisk': 'node03', 'initiator_iqn': 'iqn.2005-03.org.open-iscsi:custom03'}
               ).status_code == 201
    before = stored(admin, service)
    text = assert_error(put(admin, service, device, body), 422)
    assert message in text
    assert stored(admin, service) == before


def test_conflicts_are_409(service, admin):
    assert put(admin, service, 'node01', SEED).status_code == 201
    # The vDisk belongs to node01 already.
    other = dict(SEED, initiator_iqn=PREFIX + ':node01')
    assert 'vDisk node01 is already assigned' in assert_error(put(admin, service, 'other', other), 409, 'conflict')
    # Two devices cannot share an initiator IQN (one ACL would admit both).
    custom = 'iqn.2005-03.org.open-iscsi:custom03'
    assert put(admin, service, 'node03', {'vdisk': 'node03', 'initiator_iqn': custom}).status_code == 201
    message = assert_error(put(admin, service, 'quote', {'vdisk': 'quote', 'initiator_iqn': custom}), 409, 'conflict')
    assert 'initiator IQN' in message
    assert [a['device'] for a in stored(admin, service)] == ['node01', 'node03']


# -- request bodies and hostile input ------------------------------------------

def raw_request(service, data, timeout=10):
    """Send raw bytes over TLS; return the status line's code and the body."""
    context = ssl.create_default_context(cafile=service.ca)
    with socket.create_connection(('127.0.0.1', service.port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname='127.0.0.1') as tls:
            tls.sendall(data)
            chunks = []
            while True:
                try:
                    chunk = tls.recv(65536)
                except (ConnectionResetError, ssl.SSLError):
                    break
                if not chunk:
                    break
                chunks.append(chunk)
    reply = b''.join(chunks)
    head, _sep, body = reply.partition(b'\r\n\r\n')
    return int(head.split(b' ')[1]), body


@pytest.mark.parametrize('data,status,code', [
    (b'{"vdisk": "node01",', 400, 'malformed_json'),
    (b'[1, 2]', 400, 'malformed_json'),
    (b'\xff\xfe{}', 400, 'malformed_json'),
    (b'[' * 50000 + b']' * 50000, 413, 'body_too_large'),
    (b'[' * 30000, 400, 'malformed_json'),  # nesting bomb under the size limit
    (b'x' * (64 * 1024 + 1), 413, 'body_too_large'),
])
def test_bad_bodies(service, admin, data, status, code):
    response = admin.put(api(service, '/assignments/node01'), data=data, headers={'Content-Type': 'application/json'})
    assert_error(response, status, code)
    assert stored(admin, service) == []


def test_wrong_content_type_is_415(service, admin):
    response = admin.put(api(service, '/assignments/node01'), data=json.dumps(SEED),
                         headers={'Content-Type': 'text/plain'})
    assert_error(response, 415, 'unsupported_media_type')


def test_chunked_body_is_whole_before_the_api_sees_it(service, admin):
    """The front reads a chunked body whole (within the body size limit) and
    hands the API a Content-Length; the API alone would answer 411."""
    body = json.dumps(SEED).encode()
    status, _reply = raw_request(service, b'PUT /api/v1/assignments/node01 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
                                 b'Authorization: Bearer ' + ADMIN_TOKEN.encode() + b'\r\n'
                                 b'Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n'
                                 + b'%x\r\n' % len(body) + body + b'\r\n0\r\n\r\n')
    assert status == 201
    assert [a['device'] for a in stored(admin, service)] == ['node01']
    admin.delete(api(service, '/assignments/node01'))
    chunk = b'x' * 40000
    status, reply = raw_request(service, b'PUT /api/v1/assignments/node01 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n'
                                b'Authorization: Bearer ' + ADMIN_TOKEN.encode() + b'\r\n'
                                b'Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n'
                                + (b'%x\r\n' % len(chunk) + chunk + b'\r\n') * 2 + b'0\r\n\r\n')
    assert status == 413 and json.loads(reply)['error']['code'] == 'body_too_large'
    assert stored(admin, service) == []


def test_huge_declared_body_is_refused_before_reading(service, admin):
    status, reply = raw_request(service, b'PUT /api/v1/assignments/node01 HTTP/1.1\r\nHost: x\r\n'
                                b'Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{')
    assert status == 413 and json.loads(reply)['error']['code'] == 'body_too_large'
    assert stored(admin, service) == []


def test_oversized_headers_and_garbage(service):
    status, _reply = raw_request(service, b'GET /healthz HTTP/1.1\r\nX-Big: ' + b'a' * 20000 + b'\r\n\r\n')
    assert status == 431
    status, _reply = raw_request(service, b'GARBAGE\r\n\r\n')
    assert status == 400
    status, _reply = raw_request(service, b'GET /healthz HTTP/2.0\r\n\r\n')
    assert status == 505


HOSTILE_IDS = ['Node01', '..%2F..%2Fetc%2Fpasswd', 'a%2Fb', "x'%20OR%20'1'='1", 'x;DROP%20TABLE%20assignments',
               '-leading-dash', 'a' * 64, 'n%00ul', 'sp%20ace', 'under_score', '%C3%A9t%C3%A9']


@pytest.mark.parametrize('device', HOSTILE_IDS)
def test_hostile_device_ids_are_400(service, admin, device):
    device_session = service.session(token_for(admin, service, 'node01'))
    for session, method, path in ((admin, 'GET', '/assignments/'), (admin, 'PUT', '/assignments/'),
                                  (admin, 'DELETE', '/assignments/'), (device_session, 'GET', '/boot/')):
        response = session.request(method, api(service, path) + device, json=SEED)
        # An encoded NUL never gets past the front's URI parser.
        assert_error(response, 400, 'bad_request' if '%00' in device else 'invalid_device')
    assert stored(admin, service) == []
    assert_error(admin.get(api(service, '/assignments'), params={'device': "x' OR 1=1 --"}), 400)


def test_hostile_ids_in_bodies_are_422(service, admin):
    for device in ("x'; DROP TABLE device_tokens; --", '../../etc', 'A', ''):
        response = admin.post(api(service, '/tokens'), json={'device': device})
        assert_error(response, 422, 'invalid_token_request')
    assert_error(admin.post(api(service, '/tokens'), json={'device': 'node01', 'name': 'a/b'}), 422)
    assert_error(admin.post(api(service, '/tokens'), json={'device': 'node01', 'secret': 'mine'}), 422)
    assert_error(admin.get(api(service, '/tokens/..%2F..')), 400, 'invalid_token_id')
    assert_error(admin.get(api(service, '/vdisks/..%2Fnode01')), 400, 'invalid_vdisk')
    assert admin.get(api(service, '/tokens')).json()['tokens'] == []


# -- tokens ----------------------------------------------------------------------

def test_token_lifecycle(service, admin):
    response = admin.post(api(service, '/tokens'), json={'device': 'node01', 'name': 'primary'})
    assert response.status_code == 201
    assert response.headers['Cache-Control'] == 'no-store'
    meta, secret = response.json()['token'], response.json()['secret']
    assert secret.startswith('cdv1.%s.' % meta['id'])
    assert len(secret.split('.')[2]) >= 43  # 32 random bytes
    listed = admin.get(api(service, '/tokens')).json()['tokens']
    assert listed == [meta]
    assert set(meta) == {'id', 'device', 'name', 'created_at', 'replaced_by'}
    assert secret not in json.dumps(listed)
    assert admin.get(api(service, '/tokens/' + meta['id'])).json()['token'] == meta
    assert admin.get(api(service, '/tokens'), params={'device': 'node02'}).json()['tokens'] == []
    # Same name again: conflict; the first token still works.
    assert_error(admin.post(api(service, '/tokens'), json={'device': 'node01', 'name': 'primary'}), 409)
    assert put(admin, service, 'node01', SEED).status_code == 201
    device = service.session(secret)
    assert device.get(api(service, '/boot/node01')).status_code == 200
    # Same id, other secret: 401.
    forged = secret.rsplit('.', 1)[0] + '.' + 'A' * 43
    assert_error(service.session(forged).get(api(service, '/boot/node01')), 401)
    # Revoked: 401 at once (every worker).
    assert admin.delete(api(service, '/tokens/' + meta['id'])).status_code == 204
    for _attempt in range(4):
        assert_error(service.session(secret).get(api(service, '/boot/node01')), 401)


def test_token_hash_at_rest(service, admin):
    secret = token_for(admin, service, 'node01')
    import sqlite3  # pylint: disable=import-outside-toplevel
    conn = sqlite3.connect('file:%s?mode=ro' % service.db, uri=True)
    try:
        rows = conn.execute('SELECT * FROM device_tokens').fetchall()
    finally:
        conn.close()
    assert rows and secret.split('.')[2].encode() not in repr(rows).encode()


# -- boot discovery ------------------------------------------------------------------

def test_boot_record_json(service, admin):
    assert put(admin, service, 'node01', SEED).status_code == 201
    device = service.session(token_for(admin, service, 'node01'))
    response = device.get(api(service, '/boot/node01'))
    assert response.status_code == 200
    assert response.headers['Cache-Control'] == 'no-store'
    record = response.json()
    assert record == {
        'api_version': 1, 'device': 'node01', 'vdisk': 'node01', 'initiator_iqn': PREFIX + ':node01',
        'target_iqn': T1, 'tpg': 1, 'portals': ['10.77.0.10:3260'], 'lun': 0, 'wwn': 'wwn-node01', 'write_protect': False,
        'chap': {'userid': 'node01-user', 'password': 'node01-secret'},
        'chap_mutual': {'userid': 'node01-muser', 'password': 'node01-msecret'},
        'overlayfs': SEED['overlayfs'], 'mounts': {'0': 'data'}, 'frozen': True, 'revision': 1}
    # An admin may read any record (troubleshooting).
    assert admin.get(api(service, '/boot/node01')).json() == record


def _source(text, tmp_path, names):
    """Evaluate a shell-form boot record in sh, as the initramfs does."""
    path = tmp_path / 'boot.env'
    path.write_text(text)
    script = '. "$1"; ' + '; '.join('printf "%%s\\0" "$%s"' % n for n in names)
    out = subprocess.run(['sh', '-c', script, 'sh', str(path)], capture_output=True, check=True).stdout
    return dict(zip(names, out.decode().split('\0')))


def test_boot_record_shell_form(service, admin, tmp_path):
    assert put(admin, service, 'node02', _partitioned(
        mounts={'1': 'data', '2': 'var/lib/puppet'}, frozen=False,
        overlayfs={'enabled': True, 'upper': '/data/overlayfs', 'work': '/data/workdir'})).status_code == 201
    device = service.session(token_for(admin, service, 'node02'))
    response = device.get(api(service, '/boot/node02'), params={'format': 'sh'})
    assert response.status_code == 200
    assert response.headers['Content-Type'].startswith('text/plain')
    assert response.headers['Cache-Control'] == 'no-store'
    lines = response.text.splitlines()
    assert all(line.split('=', 1)[1].startswith("'") for line in lines)
    env = _source(response.text, tmp_path, ['VDISK_INITIATOR_IQN', 'VDISK_TARGET_IQN', 'VDISK_PORTALS', 'VDISK_LUN',
                                            'VDISK_WWN', 'VDISK_CHAP_USER', 'VDISK_CHAP_PASS', 'VDISK_CHAP_MUTUAL_USER',
                                            'VDISK_OVERLAY', 'VDISK_OVERLAY_LOWER', 'VDISK_OVERLAY_UPPER',
                                            'VDISK_OVERLAY_WORK', 'VDISK_MOUNTS', 'VDISK_FROZEN'])
    assert env == {
        'VDISK_INITIATOR_IQN': PREFIX + ':node02', 'VDISK_TARGET_IQN': T2,
        # The target listens on 0.0.0.0: the API advertises its configured storage IPs.
        'VDISK_PORTALS': '10.77.0.10:3260 10.77.1.10:3260', 'VDISK_LUN': '0', 'VDISK_WWN': 'wwn-node02',
        'VDISK_CHAP_USER': 'node02-user', 'VDISK_CHAP_PASS': 'node02-secret', 'VDISK_CHAP_MUTUAL_USER': '',
        'VDISK_OVERLAY': '1', 'VDISK_OVERLAY_LOWER': '/', 'VDISK_OVERLAY_UPPER': '/data/overlayfs',
        'VDISK_OVERLAY_WORK': '/data/workdir', 'VDISK_MOUNTS': '1:data 2:var/lib/puppet', 'VDISK_FROZEN': '0'}
    # Accept: text/plain picks the same form.
    assert device.get(api(service, '/boot/node02'), headers={'Accept': 'text/plain'}).text == response.text
    assert_error(device.get(api(service, '/boot/node02'), params={'format': 'xml'}), 400, 'invalid_format')


def test_shell_form_quotes_hostile_credentials(service, admin, tmp_path):
    assert put(admin, service, 'quote', {'vdisk': 'quote'}).status_code == 201
    device = service.session(token_for(admin, service, 'quote'))
    text = device.get(api(service, '/boot/quote'), params={'format': 'sh'}).text
    env = _source(text, tmp_path, ['VDISK_CHAP_USER', 'VDISK_CHAP_PASS', 'VDISK_WWN'])
    assert env == {'VDISK_CHAP_USER': "it's", 'VDISK_CHAP_PASS': "pa ss'word$(x)", 'VDISK_WWN': "wwn-it's"}


def test_device_isolation(service, admin):
    assert put(admin, service, 'node01', SEED).status_code == 201
    assert put(admin, service, 'node02', _partitioned()).status_code == 201
    one = service.session(token_for(admin, service, 'node01'))
    two = service.session(token_for(admin, service, 'node02'))
    # 403 for another device's record, existing or not (no existence oracle).
    for path in ('/boot/node02', '/boot/node03', '/boot/nosuchdevice'):
        assert_error(one.get(api(service, path)), 403, 'forbidden')
    own = one.get(api(service, '/boot/node01')).text + one.get(api(service, '/boot/node01?format=sh')).text
    for foreign in ('node02', 'custom03', T2, '10.77.1.10'):
        assert foreign not in own
    assert 'node01' not in two.get(api(service, '/boot/node02')).text


@pytest.mark.parametrize('secret', ['two\nlines', 'lone-\ud800-surrogate', 'nul\x00inside'])
def test_a_value_the_shell_form_cannot_carry_fails_that_form_alone(service, admin, secret):
    # One bad value in LIO's save file (a hand-edited CHAP secret): the shell
    # form says why it cannot carry it (503), the JSON form still answers, and
    # nothing is a 500.
    assert put(admin, service, 'node01', SEED).status_code == 201
    device = service.session(token_for(admin, service, 'node01'))
    original = saveconfig()
    changed = saveconfig()
    changed['targets'][0]['tpgs'][0]['node_acls'][0]['chap_password'] = secret
    try:
        with open(service.save_file + '.tmp', 'w', encoding='utf-8') as handle:
            json.dump(changed, handle)  # ensure_ascii: a lone surrogate is written as \ud800
        os.rename(service.save_file + '.tmp', service.save_file)
        for _attempt in range(4):  # both workers
            sh = device.get(api(service, '/boot/node01'), params={'format': 'sh'})
            assert 'shell' in assert_error(sh, 503, 'unsafe_value') or 'line break or NUL' in sh.text
            answer = device.get(api(service, '/boot/node01'))
            assert answer.status_code == 200 and answer.json()['chap']['password'] == secret
    finally:
        with open(service.save_file + '.tmp', 'w', encoding='utf-8') as handle:
            json.dump(original, handle)
        os.rename(service.save_file + '.tmp', service.save_file)


def test_boot_record_follows_changes(service, admin):
    assert put(admin, service, 'node01', SEED).status_code == 201
    secret = token_for(admin, service, 'node01')

    def fetch():
        # A new connection each time, so both workers answer over the loop.
        return [service.session(secret).get(api(service, '/boot/node01')) for _attempt in range(6)]

    assert {r.json()['frozen'] for r in fetch()} == {True}
    assert put(admin, service, 'node01', dict(SEED, frozen=False)).status_code == 200
    assert {(r.json()['frozen'], r.json()['revision']) for r in fetch()} == {(False, 2)}
    # The LIO save file changes (new CHAP secret): records follow, without a restart.
    original = saveconfig()
    changed = saveconfig()
    changed['targets'][0]['tpgs'][0]['node_acls'][0]['chap_password'] = 'rotated-secret'
    try:
        with open(service.save_file + '.tmp', 'w', encoding='utf-8') as handle:
            json.dump(changed, handle)
        os.rename(service.save_file + '.tmp', service.save_file)
        assert {r.json()['chap']['password'] for r in fetch()} == {'rotated-secret'}
        # The ACL disappears: 503 (curl --retry retries it), not a record that cannot log in.
        changed['targets'][0]['tpgs'][0]['node_acls'] = []
        with open(service.save_file + '.tmp', 'w', encoding='utf-8') as handle:
            json.dump(changed, handle)
        os.rename(service.save_file + '.tmp', service.save_file)
        for response in fetch():
            assert 'no ACL' in assert_error(response, 503, 'unresolvable_assignment')
    finally:
        with open(service.save_file + '.tmp', 'w', encoding='utf-8') as handle:
            json.dump(original, handle)
        os.rename(service.save_file + '.tmp', service.save_file)
    assert fetch()[0].json()['chap']['password'] == 'node01-secret'


# -- vDisks ------------------------------------------------------------------------

def test_vdisks(service, admin):
    assert put(admin, service, 'node01', SEED).status_code == 201
    vdisks = {v['name']: v for v in admin.get(api(service, '/vdisks')).json()['vdisks']}
    assert set(vdisks) >= {'node01', 'node02', 'noacl', 'unexported'}
    assert vdisks['node01']['assigned_to'] == 'node01'
    assert vdisks['node02']['assigned_to'] is None
    assert vdisks['node01']['exports'] == [{'target': T1, 'tpg': 1, 'lun': 0, 'enabled': True,
                                            'initiators': [PREFIX + ':node01']}]
    assert vdisks['unexported']['storage_object'] is None
    assert (vdisks['node03']['write_through'], vdisks['node01']['write_through']) == (True, False)
    assert [p['number'] for p in vdisks['node02']['partitions']] == [1, 2, 3]
    one = admin.get(api(service, '/vdisks/node02')).json()['vdisk']
    assert one == vdisks['node02']
    assert 'secret' not in json.dumps(vdisks)


def test_keep_alive_and_many_requests(service, admin):
    session = service.session()
    for _attempt in range(20):
        assert session.get(service.url + '/healthz').status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(service.url + '/healthz', verify=True, timeout=5)  # not trusted without the CA
