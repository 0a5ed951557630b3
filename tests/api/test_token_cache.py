# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The device-token rows the API caches on the boot path: dropped by any
commit of any process, never filled by tokens that do not exist (the real
App and SQLite store; a second Store stands for another worker)."""

from __future__ import annotations

import json
import os
import secrets
import sys

import pytest

from apitest import SERVICE_DIR

sys.path.insert(0, SERVICE_DIR)

from vdisk_api import app as app_mod, config as config_mod, store as store_mod  # noqa: E402


@pytest.fixture
def api(tmp_path):
    admin = tmp_path / 'admin-tokens'
    admin.write_text('admin-secret\n')
    os.chmod(admin, 0o600)
    (tmp_path / 'saveconfig.json').write_text('{"storage_objects": [], "targets": []}')
    (tmp_path / 'pool').mkdir()
    conf = tmp_path / 'api.json'
    conf.write_text(json.dumps({'database': str(tmp_path / 'state.db'), 'admin_token_file': str(admin),
                                'lio_save_file': str(tmp_path / 'saveconfig.json'),
                                'pool_path': str(tmp_path / 'pool'), 'unix_socket': str(tmp_path / 's')}))
    config = config_mod.load(str(conf))
    store_mod.migrate(config['database'])
    return app_mod.App(config), store_mod.Store(config['database'])


def _get(app, token, device='node01'):
    return app.handle(app_mod.Request('GET', '/api/v1/boot/' + device, {'authorization': 'Bearer ' + token}))


def test_a_token_revoked_by_another_process_fails_on_the_next_request(api):
    app, other = api
    _meta, token = other.create_token('node01', 'primary')
    # 404: authenticated (the device has no assignment), and the row is now cached.
    assert _get(app, token).status == 404
    assert _get(app, token).status == 404
    other.delete_token(_meta['id'])
    assert _get(app, token).status == 401


def test_a_wrong_secret_for_a_cached_id_is_refused(api):
    app, other = api
    meta, token = other.create_token('node01', 'primary')
    assert _get(app, token).status == 404
    assert _get(app, 'cdv1.%s.%s' % (meta['id'], secrets.token_urlsafe(32))).status == 401
    assert _get(app, token[:-1] + ('A' if token[-1] != 'A' else 'B')).status == 401


def test_unknown_token_ids_do_not_grow_the_cache(api):
    app, other = api
    _meta, token = other.create_token('node01', 'primary')
    assert _get(app, token).status == 404
    for _i in range(500):
        assert _get(app, 'cdv1.%s.%s' % (secrets.token_hex(8), secrets.token_urlsafe(32))).status == 401
    assert len(app._token_rows) == 1  # pylint: disable=protected-access


def test_admin_token_still_works_and_device_tokens_skip_the_admin_file(api, tmp_path):
    app, other = api
    _meta, token = other.create_token('node01', 'primary')
    assert app.handle(app_mod.Request('GET', '/api/v1/tokens', {'authorization': 'Bearer admin-secret'})).status == 200
    # The admin file broken (world-readable): admin access off, devices unaffected.
    os.chmod(tmp_path / 'admin-tokens', 0o644)
    assert app.handle(app_mod.Request('GET', '/api/v1/tokens', {'authorization': 'Bearer admin-secret'})).status == 401
    assert _get(app, token).status == 404
