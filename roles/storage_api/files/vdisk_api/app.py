# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Routes and handlers of /api/v1, independent of the transport.

Reads run on the event loop with the reader connection. Writes are returned
as Deferred functions the server runs in one writer thread (own connection),
so an fsync or a lock wait never stalls boot discovery.

Order of checks on every route: authentication (401), then the path's ids
(400), then scope (403), then existence (404), then the body (400/413/415/422).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
from urllib.parse import parse_qs, unquote

from vdisk_api import API_VERSION, changes, config as config_mod, inventory, pool_layout, rules, snapshot_schedule
from vdisk_api import store as store_mod

log = logging.getLogger('vdisk_api')

JSON = 'application/json'
NO_STORE = (('Cache-Control', 'no-store'),)


class Response:
    __slots__ = ('status', 'body', 'content_type', 'headers', 'route')

    def __init__(self, status, body, content_type=JSON, headers=(), route='other'):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.route = route


class Request:
    __slots__ = ('method', 'target', 'headers', 'body')

    def __init__(self, method, target, headers, body=b''):
        self.method = method
        self.target = target
        self.headers = headers  # lower-case names
        self.body = body


class Deferred:
    """A write to run in the writer thread: func(store) -> Response."""
    __slots__ = ('func', 'route')

    def __init__(self, func, route):
        self.func = func
        self.route = route


class HttpError(Exception):
    def __init__(self, status, code, message, headers=()):
        super(HttpError, self).__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def dumps(data):
    return json.dumps(data, sort_keys=True, separators=(',', ':')).encode('utf-8') + b'\n'


def _is_token_id(value):
    return isinstance(value, str) and len(value) == 16 and all(c in '0123456789abcdef' for c in value)


def error_response(status, code, message, headers=(), route='other'):
    return Response(status, dumps({'error': {'code': code, 'message': message}}), headers=headers, route=route)


def json_response(status, data, route, secret=False):
    return Response(status, dumps(data), headers=NO_STORE if secret else (), route=route)


def shell_quote(value):
    text = '' if value is None else str(value)
    # One KEY='value' per line: a newline or NUL would break line-based parsing.
    if '\n' in text or '\r' in text or '\x00' in text:
        raise HttpError(503, 'unsafe_value', 'a boot record value contains a line break or NUL')
    return "'" + text.replace("'", "'\\''") + "'"


def boot_json(record):
    return dumps(record)


def _encoded(build, record, form):
    """One form of a boot record, or the HttpError saying why this form cannot carry it.

    The two forms are built apart: a value only the shell form cannot carry
    (a line break, NUL, or text that is not UTF-8, such as a lone surrogate
    from LIO's save file) fails that form alone, with its reason, never as a 500.
    """
    try:
        return build(record)
    except HttpError as exc:
        return exc
    except (UnicodeError, ValueError) as exc:
        return HttpError(503, 'unsafe_value', 'the boot record cannot be written as %s: %s' % (form, exc))


def boot_shell(record):
    ov = record['overlayfs']
    chap = record['chap'] or {}
    mutual = record['chap_mutual'] or {}
    pairs = [
        ('VDISK_API_VERSION', record['api_version']),
        ('VDISK_DEVICE', record['device']),
        ('VDISK_NAME', record['vdisk']),
        ('VDISK_INITIATOR_IQN', record['initiator_iqn']),
        ('VDISK_TARGET_IQN', record['target_iqn']),
        ('VDISK_TPG', record['tpg']),
        ('VDISK_PORTALS', ' '.join(record['portals'])),
        ('VDISK_LUN', record['lun']),
        ('VDISK_WWN', record['wwn']),
        ('VDISK_READONLY', int(record['write_protect'])),
        ('VDISK_CHAP_USER', chap.get('userid', '')),
        ('VDISK_CHAP_PASS', chap.get('password', '')),
        ('VDISK_CHAP_MUTUAL_USER', mutual.get('userid', '')),
        ('VDISK_CHAP_MUTUAL_PASS', mutual.get('password', '')),
        ('VDISK_OVERLAY', int(ov['enabled'])),
        ('VDISK_OVERLAY_LOWER', ov['lower']),
        ('VDISK_OVERLAY_UPPER', ov['upper'] or ''),
        ('VDISK_OVERLAY_WORK', ov['work'] or ''),
        ('VDISK_MOUNTS', ' '.join('%s:%s' % kv for kv in record['mounts'].items())),
        ('VDISK_FROZEN', int(record['frozen'])),
        ('VDISK_REVISION', record['revision']),
    ]
    return ''.join('%s=%s\n' % (key, shell_quote(value)) for key, value in pairs).encode('utf-8')


class App:
    def __init__(self, config, metrics=None):
        self.config = config
        self.metrics = metrics
        self.max_body = config['max_body_bytes']
        self.lio = inventory.Lio(config['lio_save_file'])
        self.pool = inventory.Pool(config['pool_path'])
        self.reader = store_mod.Store(config['database'])
        self._writer = None
        self._writer_lock = threading.Lock()
        self._admin = (None, ())
        # Both caches hold only what the database (and, for boot records, the
        # files they are built from) said; both are dropped when any
        # connection commits (PRAGMA data_version, read once per request).
        self._boot_cache = {}
        self._token_rows = {}  # token id -> (secret_sha256, device): rows, never presented tokens
        self._data_version = None
        # The sources are checked only after an inotify event on them
        # (changes.py); a boot record checked since the last event (its
        # generation is the current one) is answered without a look.
        watched = [os.path.dirname(os.path.abspath(config['database']))]
        if os.path.islink(config['lio_save_file']):  # the link itself may be replaced
            watched.append(os.path.dirname(os.path.abspath(config['lio_save_file'])))
        self._changes = changes.ChangeWatch(directories=watched, files=(config['lio_save_file'],))
        self._generation = 0
        self.started = time.time()
        # (collection, with an item) -> (route, methods, handler)
        self._routes = {
            ('assignments', False): ('assignments', ('GET',), self.list_assignments),
            ('assignments', True): ('assignment', ('GET', 'PUT', 'DELETE'), self.assignment),
            ('tokens', False): ('tokens', ('GET', 'POST'), self.tokens),
            ('tokens', True): ('token', ('GET', 'DELETE'), self.token),
            ('vdisks', False): ('vdisks', ('GET',), self.list_vdisks),
            ('vdisks', True): ('vdisk', ('GET',), self.vdisk),
            ('boot', True): ('boot', ('GET',), self.boot),
        }
        self._admin_hashes()  # log a bad admin token file at start, not only at the first request

    # -- authentication ----------------------------------------------------

    def _admin_hashes(self):
        """The admin token hashes; re-read whenever the file changes, so tokens rotate without a restart.

        Fails closed: a file that is missing, unreadable, empty or readable by
        group or others gives no admin access at all (devices still boot), with
        a log line saying why, until the file is right again.
        """
        path = self.config['admin_token_file']
        try:
            info = os.stat(path)
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino, info.st_mode)
        except OSError as exc:
            stamp = ('missing', exc.errno)
        if stamp != self._admin[0]:
            hashes = ()
            try:
                tokens, _mtime = config_mod.read_admin_token_file(path)
                hashes = tuple(bytes.fromhex(t[7:]) if t.startswith('sha256:') else
                               hashlib.sha256(t.encode('utf-8')).digest() for t in tokens)
                if not hashes:
                    log.error('admin access is off: admin token file %s holds no token', path)
            except (config_mod.ConfigError, ValueError, OSError) as exc:
                log.error('admin access is off: %s', exc)
            self._admin = (stamp, hashes)
        return self._admin[1]

    def authenticate(self, request):
        """('admin', None) or ('device', device id); 401 otherwise."""
        header = request.headers.get('authorization')
        challenge = (('WWW-Authenticate', 'Bearer realm="vdisk-api"'),)
        if not header:
            raise HttpError(401, 'unauthenticated', 'missing bearer token (Authorization: Bearer <token>)', challenge)
        scheme, _sep, token = header.partition(' ')
        token = token.strip()
        if scheme.lower() != 'bearer' or not token or len(token) > 512:
            raise HttpError(401, 'unauthenticated', 'malformed Authorization header; use Bearer <token>', challenge)
        # A device token (the boot path, thousands in a storm) is checked
        # first: one cached row and one hash, no look at the admin file.
        device = self._device_for_token(token)
        if device is not None:
            return 'device', device
        digest = hashlib.sha256(token.encode('utf-8', 'replace')).digest()
        is_admin = False
        for candidate in self._admin_hashes():
            # Compare every admin hash (no early exit) in constant time.
            is_admin |= hmac.compare_digest(candidate, digest)
        if is_admin:
            return 'admin', None
        raise HttpError(401, 'unauthenticated', 'invalid or revoked token', challenge)

    def _device_for_token(self, token):
        """The device a presented device token belongs to, or None.

        The row is cached until the next commit (a revoked token fails at
        once); the secret is hashed and compared in constant time every time.
        Only rows that exist are cached, so random ids cannot grow the cache.
        """
        parts = store_mod.split_token(token)
        if parts is None:
            return None
        row = self._token_rows.get(parts[0])
        if row is None:
            row = self.reader.token_row(parts[0])
            if row is None:
                return None
            self._token_rows[parts[0]] = row
        if not hmac.compare_digest(row[0], store_mod.hash_secret(parts[1])):
            return None
        return row[1]

    def _refresh(self):
        """Drop the caches if any connection committed since the last check
        (run on a request after an event in the database's directory, or on
        every request where that directory is not watched)."""
        version = self.reader.data_version()
        if version != self._data_version:
            self._boot_cache.clear()
            self._token_rows.clear()
            self._data_version = version

    @staticmethod
    def require_admin(principal):
        if principal[0] != 'admin':
            raise HttpError(403, 'forbidden', 'this endpoint needs an admin token; device tokens may only read '
                                              'their own boot record')

    # -- request plumbing ---------------------------------------------------

    def json_body(self, request):
        ctype = request.headers.get('content-type', JSON).split(';')[0].strip().lower()
        if ctype != JSON:
            raise HttpError(415, 'unsupported_media_type', 'request body must be application/json')
        try:
            data = json.loads(request.body.decode('utf-8'))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise HttpError(400, 'malformed_json', 'request body is not valid JSON: %s' % str(exc)[:200])
        if not isinstance(data, dict):
            raise HttpError(400, 'malformed_json', 'request body must be a JSON object')
        return data

    def handle(self, request):
        """Response, or Deferred for writes. Never raises."""
        route = 'other'
        try:
            path, _sep, query = request.target.partition('?')
            params = dict((k, v[-1]) for k, v in parse_qs(query, keep_blank_values=True).items()) if query else {}
            parts = path.split('/')[1:]
            if '%' in path:
                parts = [unquote(p) for p in parts]
            method = request.method
            if parts == ['healthz']:
                route = 'healthz'
                self._allow(method, ('GET',))
                return self.healthz()
            if parts == ['metrics']:
                route = 'metrics'
                self._allow(method, ('GET',))
                return Response(200, self.render_metrics().encode('utf-8'),
                                'text/plain; version=0.0.4; charset=utf-8', route='metrics')
            if len(parts) < 3 or parts[0] != 'api' or parts[1] != 'v%d' % API_VERSION:
                raise HttpError(404, 'not_found', 'no such endpoint: %s' % path[:200])
            collection, rest = parts[2], parts[3:]
            if len(rest) > 1:
                raise HttpError(404, 'not_found', 'no such endpoint: %s' % path[:200])
            item = rest[0] if rest else None
            handler = self._routes.get((collection, item is not None))
            if handler is None:
                raise HttpError(404, 'not_found', 'no such endpoint: %s' % path[:200])
            route, methods, func = handler
            self._allow(method, methods)
            if self._changes.changed():
                self._generation += 1
                self._refresh()
            principal = self.authenticate(request)
            args = (request, principal, params) if item is None else (request, principal, params, item)
            response = func(*args)
            response.route = route
            return response
        except HttpError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers, route)
        except Exception:  # pylint: disable=broad-exception-caught
            log.exception('internal error on %s %s', request.method, request.target[:200])
            return error_response(500, 'internal_error', 'internal server error (see the service log)', route=route)

    @staticmethod
    def _allow(method, methods):
        if method not in methods:
            raise HttpError(405, 'method_not_allowed', 'method %s is not allowed here (allowed: %s)'
                            % (method, ', '.join(methods)), (('Allow', ', '.join(methods)),))

    @staticmethod
    def _id(value, check, what):
        try:
            return check(value)
        except rules.RuleError as exc:
            raise HttpError(400, 'invalid_%s' % what, str(exc))

    def writer(self):
        # Only ever called from the single writer thread.
        if self._writer is None:
            self._writer = store_mod.Store(self.config['database'])
        return self._writer

    def run_deferred(self, deferred):
        """Run a write in the writer thread; never raises."""
        try:
            with self._writer_lock:
                store = self.writer()
                before = store.writes
                try:
                    response = deferred.func(store)
                finally:
                    if self.metrics is not None and store.writes != before:
                        self.metrics.db_write(store.writes - before)
            response.route = deferred.route
            self._boot_cache.clear()
            self._token_rows.clear()
            return response
        except HttpError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers, deferred.route)
        except store_mod.Conflict as exc:
            return error_response(409, 'conflict', str(exc), route=deferred.route)
        except Exception:  # pylint: disable=broad-exception-caught
            log.exception('internal error in a write')
            return error_response(500, 'internal_error', 'internal server error (see the service log)',
                                  route=deferred.route)

    # -- endpoints ------------------------------------------------------------

    def healthz(self):
        try:
            self.reader.check()
        except Exception as exc:  # pylint: disable=broad-exception-caught
            return error_response(503, 'unhealthy', 'database unavailable: %s' % exc, route='healthz')
        lio_stamp = inventory._stamp(self.config['lio_save_file'])  # pylint: disable=protected-access
        return json_response(200, {'status': 'ok', 'api_version': API_VERSION,
                                   'lio_save_file': lio_stamp is not None}, 'healthz')

    def render_metrics(self):
        extra = [('vdisk_api_up_since_seconds', 'Start time of this worker (unix seconds).', '%d' % self.started)]
        if self.metrics is None:
            return ''
        text = self.metrics.render(extra)
        if self.config['pool_path'].startswith(pool_layout.LVM_THIN):
            # The snapshot round's status file (world-readable, no secret in it).
            lines = snapshot_schedule.prometheus(snapshot_schedule.read_status(self.config['pool_path']), time.time())
            text += ''.join(line + '\n' for line in lines)
        return text

    def list_assignments(self, request, principal, params):
        self.require_admin(principal)
        device = params.get('device')
        if device is not None:
            self._id(device, rules.check_device, 'device')
        return json_response(200, {'assignments': self.reader.list_assignments(device=device)}, 'assignments')

    def assignment(self, request, principal, params, device):
        self.require_admin(principal)
        self._id(device, rules.check_device, 'device')
        if request.method == 'GET':
            found = self.reader.get_assignment(device)
            if found is None:
                raise HttpError(404, 'not_found', 'device %s has no assignment' % device)
            return json_response(200, {'assignment': found}, 'assignment')
        if request.method == 'DELETE':
            def delete(store):
                if not store.delete_assignment(device):
                    raise HttpError(404, 'not_found', 'device %s has no assignment' % device)
                log.info('assignment of device %s deleted', device)
                return Response(204, b'', route='assignment')
            return Deferred(delete, 'assignment')
        body = self.json_body(request)
        if 'device' in body and body['device'] != device:
            raise HttpError(422, 'invalid_assignment', 'body device %r differs from the URL device %r'
                            % (body['device'], device))
        body['device'] = device
        dry_run = params.get('dry_run', '').lower() in ('1', 'true', 'yes')
        record = self.validate_assignment(body)
        if dry_run:
            return json_response(200, {'assignment': record, 'dry_run': True}, 'assignment')

        def put(store):
            # Re-validated in the writer: LIO or the pool may have changed
            # since the request was parsed.
            checked = self.validate_assignment(body)
            stored, created, changed = store.put_assignment(checked)
            if changed:
                log.info('assignment of device %s %s (vdisk %s, revision %d)', device,
                         'created' if created else 'updated', stored['vdisk'], stored['revision'])
            return json_response(201 if created else 200, {'assignment': stored, 'changed': changed}, 'assignment')
        return Deferred(put, 'assignment')

    def validate_assignment(self, body):
        """The authoritative check: the seed's rules, then the pool, then LIO."""
        try:
            record = rules.normalize_assignment(body, self.config['initiator_iqn_prefix'])
        except rules.RuleError as exc:
            raise HttpError(422, 'invalid_assignment', str(exc))
        try:
            _stamp, meta = self.pool.get(record['vdisk'])
        except inventory.ResolveError as exc:
            raise HttpError(422, 'invalid_assignment', str(exc))
        if meta is None:
            raise HttpError(422, 'unknown_vdisk', 'unknown vDisk %s (no %s/%s/vdisk.json in the pool)'
                            % (record['vdisk'], self.pool.path, record['vdisk']))
        try:
            rules.check_partitions(record['mounts'], dict(meta, name=record['vdisk']))
        except rules.RuleError as exc:
            raise HttpError(422, 'invalid_assignment', str(exc))
        _stamp, index = self.lio_index()
        try:
            record['target'] = inventory.resolve_target(record['vdisk'], record['target'], index)
            inventory.resolve_boot(record, meta, index, self.config['advertised_portals'])
        except inventory.ResolveError as exc:
            raise HttpError(422, 'unresolvable_assignment', str(exc))
        return record

    def lio_index(self):
        try:
            return self.lio.snapshot()
        except inventory.ResolveError as exc:
            raise HttpError(503, 'lio_unavailable', str(exc))

    def tokens(self, request, principal, params):
        self.require_admin(principal)
        if request.method == 'GET':
            device = params.get('device')
            if device is not None:
                self._id(device, rules.check_device, 'device')
            return json_response(200, {'tokens': self.reader.list_tokens(device=device)}, 'tokens')
        body = self.json_body(request)
        unknown = set(body) - {'device', 'name', 'replaces'}
        if unknown:
            raise HttpError(422, 'invalid_token_request', 'unknown fields: %s' % ', '.join(sorted(unknown)))
        device = body.get('device')
        try:
            rules.check_device(device)
        except rules.RuleError as exc:
            raise HttpError(422, 'invalid_token_request', str(exc))
        name = body.get('name', 'default')
        if not isinstance(name, str) or not rules.VDISK_RE.fullmatch(name):
            raise HttpError(422, 'invalid_token_request', 'token name %r is invalid: 1-63 characters A-Z, a-z, '
                                                          '0-9, ".", "_", "-"' % (name,))
        replaces = body.get('replaces')
        if 'replaces' in body and not _is_token_id(replaces):
            raise HttpError(422, 'invalid_token_request', 'replaces must be a token id (16 lower-case hex digits)')

        def create(store):
            meta, token = store.create_token(device, name, replaces)
            if replaces is None:
                log.info('device token %s (%s) created for device %s', meta['id'], name, device)
            else:
                log.info('device token %s (%s) created for device %s, replacing %s (still valid until revoked)',
                         meta['id'], name, device, replaces)
            return json_response(201, {'token': meta, 'secret': token}, 'tokens', secret=True)
        return Deferred(create, 'tokens')

    def token(self, request, principal, params, token_id):
        self.require_admin(principal)
        if not _is_token_id(token_id):
            raise HttpError(400, 'invalid_token_id', 'token id %r is not 16 lower-case hex digits' % token_id[:64])
        if request.method == 'GET':
            meta = self.reader.get_token(token_id)
            if meta is None:
                raise HttpError(404, 'not_found', 'no token %s' % token_id)
            return json_response(200, {'token': meta}, 'token')

        def delete(store):
            if not store.delete_token(token_id):
                raise HttpError(404, 'not_found', 'no token %s' % token_id)
            log.info('device token %s revoked', token_id)
            return Response(204, b'', route='token')
        return Deferred(delete, 'token')

    def _vdisk_info(self, name, index, assigned):
        _stamp, meta = self.pool.get(name)
        if meta is None:
            return None
        return inventory.vdisk_info(name, meta, index, assigned.get(name))

    def list_vdisks(self, request, principal, params):
        self.require_admin(principal)
        _stamp, index = self.lio_index()
        assigned = self.reader.assigned_vdisks()
        result = []
        for name in self.pool.names():
            try:
                info = self._vdisk_info(name, index, assigned)
            except inventory.ResolveError as exc:
                info = {'name': name, 'error': str(exc)}
            if info is not None:
                result.append(info)
        return json_response(200, {'vdisks': result}, 'vdisks')

    def vdisk(self, request, principal, params, name):
        self.require_admin(principal)
        self._id(name, rules.check_vdisk, 'vdisk')
        _stamp, index = self.lio_index()
        try:
            info = self._vdisk_info(name, index, self.reader.assigned_vdisks())
        except inventory.ResolveError as exc:
            raise HttpError(503, 'pool_unavailable', str(exc))
        if info is None:
            raise HttpError(404, 'not_found', 'unknown vDisk %s' % name)
        return json_response(200, {'vdisk': info}, 'vdisk')

    def boot(self, request, principal, params, device):
        self._id(device, rules.check_device, 'device')
        # A device token opens exactly one record: its own.
        if principal[0] == 'device' and principal[1] != device:
            raise HttpError(403, 'forbidden', 'this token belongs to another device')
        fmt = params.get('format')
        if fmt is None:
            accept = request.headers.get('accept', '')
            fmt = 'sh' if 'text/plain' in accept and JSON not in accept else 'json'
        if fmt not in ('json', 'sh'):
            raise HttpError(400, 'invalid_format', 'format must be json or sh')
        json_body, sh_body = self.boot_bodies(device)
        body = sh_body if fmt == 'sh' else json_body
        if isinstance(body, HttpError):
            raise body
        if fmt == 'sh':
            return Response(200, body, 'text/plain; charset=utf-8', NO_STORE, 'boot')
        return Response(200, body, JSON, NO_STORE, 'boot')

    def boot_bodies(self, device):
        """Both encodings of a device's boot record (each a body, or the
        HttpError of a form that cannot carry it), cached until the
        database (see _refresh), the LIO save file or the vDisk metadata
        changes.

        An entry is (LIO stamp, vdisk.json stamp, vdisk.json path, JSON body,
        shell body, generation): the generation it was last checked in, or
        None when its vDisk's directory is not watched (checked every time).
        """
        cached = self._boot_cache.get(device)
        if cached is not None and cached[5] == self._generation:
            return cached[3], cached[4]
        if cached is not None:
            # Watch first, then look: a change after the look is an event.
            generation = self._watched(cached[2])
            lio_stamp, index = self.lio_index()
            if cached[0] == lio_stamp and cached[1] == inventory._stamp(cached[2]):  # pylint: disable=protected-access
                self._boot_cache[device] = cached[:5] + (generation,)
                return cached[3], cached[4]
        else:
            lio_stamp, index = self.lio_index()
        assignment = self.reader.get_assignment(device)
        if assignment is None:
            raise HttpError(404, 'not_found', 'device %s has no assignment' % device)
        try:
            path = self.pool.metadata_path(assignment['vdisk'])
            generation = self._watched(path)
            vdisk_stamp, meta = self.pool.get(assignment['vdisk'])
        except inventory.ResolveError as exc:
            raise HttpError(503, 'pool_unavailable', str(exc))
        if meta is None:
            raise HttpError(503, 'unresolvable_assignment', 'vDisk %s of device %s is missing from the pool'
                            % (assignment['vdisk'], device))
        try:
            resolved = inventory.resolve_boot(assignment, meta, index, self.config['advertised_portals'])
        except inventory.ResolveError as exc:
            # 503: curl --retry retries it while LIO is being reconfigured.
            raise HttpError(503, 'unresolvable_assignment', str(exc))
        record = {
            'api_version': API_VERSION,
            'device': device,
            'vdisk': assignment['vdisk'],
            'initiator_iqn': assignment['initiator_iqn'],
            'overlayfs': assignment['overlayfs'],
            'mounts': assignment['mounts'],
            'frozen': assignment['frozen'],
            'revision': assignment['revision'],
        }
        record.update(resolved)
        bodies = (_encoded(boot_json, record, 'JSON'), _encoded(boot_shell, record, 'shell variables'))
        if vdisk_stamp is not None:
            self._boot_cache[device] = (lio_stamp, vdisk_stamp, path) + bodies + (generation,)
        return bodies

    def _watched(self, vdisk_metadata):
        """Watch a vDisk's directory; the generation a record checked now
        belongs to, or None if the directory cannot be watched."""
        if self._changes.watch_directory(os.path.dirname(vdisk_metadata)):
            return self._generation
        return None
