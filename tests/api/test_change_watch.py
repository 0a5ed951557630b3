# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The boot path looks at its sources only after a change (inotify,
vdisk_api/changes.py): every kind of change is still seen on the next
request, and a request after no change reads no file and no database row.

The real App, SQLite store, LIO save file and pool directory; a second
Store stands for another worker. Where inotify cannot be used, every
request checks (the same tests, with the watch turned off)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from apitest import SERVICE_DIR, saveconfig, write_pool

sys.path.insert(0, SERVICE_DIR)

from vdisk_api import app as app_mod, changes, config as config_mod, inventory, store as store_mod  # noqa: E402

SEED = {'device': 'node01', 'vdisk': 'node01', 'mounts': {'0': 'data'}, 'frozen': False,
        'overlayfs': {'enabled': True, 'lower': '/', 'upper': '/data/overlayfs', 'work': '/data/workdir'}}


class Counting:
    """Counts the looks the boot path makes at its sources."""

    def __init__(self, monkeypatch, app):
        self.stamps = 0
        self.versions = 0
        real_stamp, real_version = inventory._file_stamp, app.reader.data_version  # pylint: disable=protected-access

        def stamp(path):
            self.stamps += 1
            return real_stamp(path)

        def version():
            self.versions += 1
            return real_version()

        monkeypatch.setattr(inventory, '_file_stamp', stamp)
        monkeypatch.setattr(app.reader, 'data_version', version)


@pytest.fixture(params=['inotify', 'no-inotify'])
def api(request, tmp_path, monkeypatch):
    if request.param == 'no-inotify':
        # As on a host where inotify_init1 fails (or the watch limit is reached).
        monkeypatch.setattr(changes.ChangeWatch, '__init__', _without_inotify)
    admin = tmp_path / 'admin-tokens'
    admin.write_text('admin-secret\n')
    os.chmod(admin, 0o600)
    (tmp_path / 'lio').mkdir()
    save_file = tmp_path / 'lio' / 'saveconfig.json'
    save_file.write_text(json.dumps(saveconfig()))
    write_pool(str(tmp_path / 'pool'))
    (tmp_path / 'db').mkdir()
    conf = tmp_path / 'api.json'
    conf.write_text(json.dumps({'database': str(tmp_path / 'db' / 'state.db'), 'admin_token_file': str(admin),
                                'lio_save_file': str(save_file), 'pool_path': str(tmp_path / 'pool'),
                                'unix_socket': str(tmp_path / 's')}))
    config = config_mod.load(str(conf))
    store_mod.migrate(config['database'])
    other = store_mod.Store(config['database'])
    app = app_mod.App(config)
    other.put_assignment(app.validate_assignment(dict(SEED)))
    _meta, token = other.create_token('node01', 'primary')
    return app, other, token, tmp_path, request.param


def _without_inotify(self, directories=(), files=()):
    self._fd = None  # pylint: disable=protected-access
    self._required = ()  # pylint: disable=protected-access
    self._paths = {}  # pylint: disable=protected-access


def _boot(app, token):
    response = app.handle(app_mod.Request('GET', '/api/v1/boot/node01', {'authorization': 'Bearer ' + token}))
    return response.status, (json.loads(response.body) if response.status == 200 else response.body.decode())


def _write_json(path, data, in_place=False):
    if in_place:
        with open(path, 'w', encoding='utf-8') as handle:
            json.dump(data, handle)
        return
    with open(str(path) + '.tmp', 'w', encoding='utf-8') as handle:
        json.dump(data, handle)
    os.rename(str(path) + '.tmp', path)


def test_after_no_change_a_request_reads_no_file_and_no_row(api, monkeypatch):
    app, _other, token, _tmp, mode = api
    assert _boot(app, token)[0] == 200
    count = Counting(monkeypatch, app)
    for _i in range(50):
        assert _boot(app, token)[0] == 200
    if mode == 'inotify':
        assert (count.stamps, count.versions) == (0, 0)
    else:
        # Without inotify: the LIO save file and vdisk.json, and the commit counter, every time.
        assert (count.stamps, count.versions) == (100, 50)


@pytest.mark.parametrize('in_place', [False, True], ids=['renamed', 'rewritten-in-place'])
def test_a_changed_lio_save_file_is_seen_on_the_next_request(api, in_place):
    app, _other, token, tmp, _mode = api
    save_file = tmp / 'lio' / 'saveconfig.json'
    assert _boot(app, token)[1]['chap']['password'] == 'node01-secret'
    changed = saveconfig()
    changed['targets'][0]['tpgs'][0]['node_acls'][0]['chap_password'] = 'rotated'
    # Another reader holds the old file open, so its inode outlives the rename.
    with open(save_file, encoding='utf-8'):
        _write_json(save_file, changed, in_place)
        assert _boot(app, token)[1]['chap']['password'] == 'rotated'
        changed['targets'][0]['tpgs'][0]['portals'][0]['ip_address'] = '10.77.0.99'
        _write_json(save_file, changed, in_place)
        assert _boot(app, token)[1]['portals'] == ['10.77.0.99:3260']
    changed['targets'][0]['tpgs'][0]['portals'][0]['ip_address'] = '10.77.0.98'
    _write_json(save_file, changed, in_place)
    assert _boot(app, token)[1]['portals'] == ['10.77.0.98:3260']


def test_a_commit_of_another_process_is_seen_on_the_next_request(api):
    app, other, token, _tmp, _mode = api
    assert _boot(app, token)[1]['frozen'] is False
    other.put_assignment(app.validate_assignment(dict(SEED, frozen=True)))
    assert _boot(app, token)[1]['frozen'] is True
    other.delete_token(other.list_tokens()[0]['id'])
    assert _boot(app, token)[0] == 401


def test_a_changed_or_removed_vdisk_is_seen_and_a_new_one_watched(api):
    app, _other, token, tmp, _mode = api
    metadata = tmp / 'pool' / 'node01' / 'vdisk.json'
    doc = json.loads(metadata.read_text())
    # The record's WWN comes from vdisk.json when LIO's storage object has none.
    lio = saveconfig()
    lio['storage_objects'][0]['wwn'] = ''
    _write_json(tmp / 'lio' / 'saveconfig.json', lio)
    assert _boot(app, token)[1]['wwn'] == 'wwn-node01'
    _write_json(metadata, dict(doc, wwn='wwn-changed'))
    assert _boot(app, token)[1]['wwn'] == 'wwn-changed'
    # The vDisk's directory removed: 503; made again: served, and watched again.
    shutil.rmtree(tmp / 'pool' / 'node01')
    status, body = _boot(app, token)
    assert status == 503 and 'missing from the pool' in body
    (tmp / 'pool' / 'node01').mkdir()
    _write_json(metadata, dict(doc, wwn='wwn-again'))
    assert _boot(app, token)[1]['wwn'] == 'wwn-again'
    _write_json(metadata, dict(doc, wwn='wwn-again-2'), in_place=True)
    assert _boot(app, token)[1]['wwn'] == 'wwn-again-2'


def test_the_lio_directory_replaced_is_watched_again(api):
    app, _other, token, tmp, _mode = api
    assert _boot(app, token)[0] == 200
    shutil.rmtree(tmp / 'lio')
    assert _boot(app, token)[0] == 503  # no save file: nothing is exported
    (tmp / 'lio').mkdir()
    _write_json(tmp / 'lio' / 'saveconfig.json', saveconfig())
    assert _boot(app, token)[1]['chap']['password'] == 'node01-secret'
    changed = saveconfig()
    changed['targets'][0]['tpgs'][0]['node_acls'][0]['chap_password'] = 'after-replace'
    _write_json(tmp / 'lio' / 'saveconfig.json', changed, in_place=True)
    assert _boot(app, token)[1]['chap']['password'] == 'after-replace'


def test_writes_to_a_backing_file_beside_vdisk_json_do_not_count_as_changes(api, monkeypatch):
    # A btrfs pool keeps disk.img (written by LIO all the time) beside
    # vdisk.json: its writes must not turn every request into a full check.
    app, _other, token, tmp, mode = api
    if mode != 'inotify':
        pytest.skip('without inotify every request checks')
    backing = tmp / 'pool' / 'node01' / 'disk.img'
    with open(backing, 'wb') as handle:
        assert _boot(app, token)[0] == 200
        assert _boot(app, token)[0] == 200
        count = Counting(monkeypatch, app)
        for _i in range(20):
            handle.write(b'x' * 4096)
            handle.flush()
            assert _boot(app, token)[0] == 200
        assert (count.stamps, count.versions) == (0, 0)


def test_the_watch_reports_a_change_once_and_cannot_be_fooled_by_a_missing_directory(tmp_path):
    watch = changes.ChangeWatch(directories=[str(tmp_path / 'later')])
    assert watch.changed() is True  # nothing watched yet: always "changed"
    assert watch.changed() is True
    (tmp_path / 'later').mkdir()
    assert watch.changed() is True  # the watch is set now; this call cannot know what came before
    assert watch.changed() is False
    (tmp_path / 'later' / 'f').write_text('x')
    assert watch.changed() is True
    assert watch.changed() is False
    shutil.rmtree(tmp_path / 'later')
    assert watch.changed() is True
    assert watch.changed() is True  # gone: every call says "changed" until it is back
    watch.close()
