# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one place in this collection that talks HTTP to the storage API.

Modules build a client with :func:`client_from_module` and get plain data or
an :class:`ApiError` carrying the API's JSON error (code and message).
"""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import env_fallback, missing_required_lib

REQUESTS_IMPORT_ERROR = None
try:
    import requests
except ImportError:
    requests = None
    REQUESTS_IMPORT_ERROR = traceback.format_exc()

HAS_REQUESTS = requests is not None

API_PREFIX = '/api/v1'


def api_argument_spec():
    """Connection options shared by every API module (doc fragment clusterducks.vdisk.api)."""
    return {
        'url': {'type': 'str', 'required': True, 'fallback': (env_fallback, ['CLUSTERDUCKS_VDISK_API_URL'])},
        'token': {'type': 'str', 'required': True, 'no_log': True,
                  'fallback': (env_fallback, ['CLUSTERDUCKS_VDISK_API_TOKEN'])},
        'validate_certs': {'type': 'bool', 'default': True},
        'ca_path': {'type': 'path'},
        'timeout': {'type': 'float', 'default': 10.0},
    }


class ApiError(Exception):
    """An API call failed; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, message, status=None, code=None):
        super(ApiError, self).__init__(message)
        self.status = status
        self.code = code


class ApiClient(object):
    def __init__(self, url, token, validate_certs=True, ca_path=None, timeout=10.0):
        if not HAS_REQUESTS:
            raise ApiError('the Python library requests is required')
        self.base = url.rstrip('/')
        self.timeout = timeout
        # Passed on every call: a session-level verify would be overridden
        # by REQUESTS_CA_BUNDLE from the environment.
        self.verify = (ca_path or True) if validate_certs else False
        self.session = requests.Session()
        self.session.headers['Authorization'] = 'Bearer %s' % token
        self.session.headers['Accept'] = 'application/json'

    def request(self, method, path, body=None, params=None, allow=()):
        """Call the API; returns (status, JSON document or None).

        Statuses in ``allow`` (e.g. 404 on a lookup) are returned, not raised.
        """
        url = self.base + API_PREFIX + path
        try:
            response = self.session.request(method, url, json=body, params=params, timeout=self.timeout,
                                            verify=self.verify, allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            raise ApiError('TLS error talking to %s (set ca_path to the API CA certificate?): %s' % (self.base, exc))
        except requests.exceptions.RequestException as exc:
            raise ApiError('cannot reach the storage API at %s: %s' % (self.base, exc))
        data = None
        if response.content:
            try:
                data = response.json()
            except ValueError:
                data = None
        if response.status_code < 300 or response.status_code in allow:
            return response.status_code, data
        code, message = None, (response.text or '')[:300]
        if isinstance(data, dict) and isinstance(data.get('error'), dict):
            code = data['error'].get('code')
            message = data['error'].get('message', message)
        raise ApiError('storage API answered %d to %s %s: %s' % (response.status_code, method, path, message),
                       status=response.status_code, code=code)

    # -- resources -----------------------------------------------------------

    def get_assignment(self, device):
        status, data = self.request('GET', '/assignments/%s' % device, allow=(404,))
        return None if status == 404 else data['assignment']

    def list_assignments(self):
        return self.request('GET', '/assignments')[1]['assignments']

    def put_assignment(self, device, body, dry_run=False):
        params = {'dry_run': '1'} if dry_run else None
        return self.request('PUT', '/assignments/%s' % device, body=body, params=params)[1]['assignment']

    def delete_assignment(self, device):
        self.request('DELETE', '/assignments/%s' % device, allow=(404,))

    def get_vdisk(self, name):
        status, data = self.request('GET', '/vdisks/%s' % name, allow=(404,))
        return None if status == 404 else data['vdisk']

    def list_vdisks(self):
        return self.request('GET', '/vdisks')[1]['vdisks']

    def list_tokens(self, device=None):
        params = {'device': device} if device else None
        return self.request('GET', '/tokens', params=params)[1]['tokens']

    def create_token(self, device, name, replaces=None):
        """Returns (metadata, secret token).

        With ``replaces`` (the id of the device's current token of that name)
        the old token stays valid, marked ``replaced_by`` the new one, until it
        is revoked: deliver the new token first, then delete the old one.
        """
        body = {'device': device, 'name': name}
        if replaces is not None:
            body['replaces'] = replaces
        data = self.request('POST', '/tokens', body=body)[1]
        return data['token'], data['secret']

    def device_token_works(self, device, token):
        """Whether the API accepts ``token`` as ``device``'s own token (on its boot record).

        404 (no assignment yet) and 503 (record not buildable now) come after
        authentication, so they count as accepted; 401/403 do not.
        """
        url = self.base + API_PREFIX + '/boot/%s' % device
        try:
            response = self.session.request('GET', url, timeout=self.timeout, verify=self.verify,
                                            allow_redirects=False, headers={'Authorization': 'Bearer %s' % token})
        except requests.exceptions.RequestException as exc:
            raise ApiError('cannot reach the storage API at %s: %s' % (self.base, exc))
        if response.status_code in (401, 403):
            return False
        if response.status_code < 300 or response.status_code in (404, 503):
            return True
        raise ApiError('storage API answered %d to GET /boot/%s with the device token'
                       % (response.status_code, device), status=response.status_code)

    def delete_token(self, token_id):
        self.request('DELETE', '/tokens/%s' % token_id, allow=(404,))


def client_from_module(module):
    """An ApiClient from the module's connection options; fails the module if requests is missing."""
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib('requests') + ' On Debian, install python3-requests.',
                         exception=REQUESTS_IMPORT_ERROR)
    params = module.params
    return ApiClient(params['url'], params['token'], validate_certs=params['validate_certs'],
                     ca_path=params['ca_path'], timeout=params['timeout'])
