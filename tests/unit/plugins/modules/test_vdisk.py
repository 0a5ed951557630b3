# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The vdisk module's arguments as a playbook gives them, through AnsibleModule."""

from __future__ import annotations

import contextlib

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio, lio_backstore
from ansible_collections.clusterducks.vdisk.plugins.module_utils.pool import VdiskRecord
from ansible_collections.clusterducks.vdisk.plugins.modules import vdisk
from ansible_collections.clusterducks.vdisk.tests.unit.module_harness import ExitJson, FailJson, patch_module_args, raise_on_exit

G = 1 << 30


class OnePool:
    path = spec = '/srv/vdisks'
    backstore = 'fileio'

    def __init__(self):
        self.deleted = []
        self.record = VdiskRecord('x', '/srv/vdisks/x/disk.img', G, 'wwn-x', 'xfs', [])

    def check(self):
        pass

    def get(self, name):
        return self.record if name == 'x' else None

    def list(self):
        return [self.record]

    def delete(self, record):
        self.deleted.append(record.name)

    def round_size(self, size_bytes):
        return size_bytes

    def check_room(self, name, size_bytes):
        pass

    def snapshots_of(self, name):
        return []


class SO:
    udev_path, size, write_back, aio, plugin = '/srv/vdisks/x/disk.img', G, False, False, 'fileio'


@pytest.fixture
def pool(monkeypatch):
    raise_on_exit(monkeypatch)
    the_pool = OnePool()
    monkeypatch.setattr(lio, 'HAS_RTSLIB', True)
    monkeypatch.setattr(lio, 'require_rtslib', lambda module: None)
    monkeypatch.setattr(lio, 'open_root', object)
    monkeypatch.setattr(lio, 'save_config', lambda root: None)
    exports = {'x': [{'target': 'iqn.2026-11.io.x:t', 'tpg': 1, 'lun': 0}]}
    monkeypatch.setattr(lio_backstore, 'exports_index', lambda root: exports)
    monkeypatch.setattr(lio_backstore, 'lookup', lambda name: SO() if name == 'x' else None)
    monkeypatch.setattr(lio_backstore, 'delete', lambda so: None)
    monkeypatch.setattr(vdisk, 'open_pool', lambda spec, run: the_pool)
    monkeypatch.setattr(vdisk, 'host_lock', contextlib.nullcontext)
    return the_pool


def run(args):
    with patch_module_args(dict({'pool': '/srv/vdisks'}, **args)):
        with pytest.raises((ExitJson, FailJson)) as excinfo:
            vdisk.main()
    return excinfo.type, excinfo.value.args[0]


@pytest.mark.parametrize('force', ['no', 'false', 'off', '0', False])
def test_force_no_in_a_list_item_never_deletes(pool, force):
    kind, result = run({'vdisks': [{'name': 'x', 'state': 'absent', 'force': force}]})
    assert kind is FailJson and 'set force=true' in result['msg']
    assert pool.deleted == []


def test_force_yes_in_a_list_item_deletes(pool):
    kind, result = run({'vdisks': [{'name': 'x', 'state': 'absent', 'force': 'yes'}]})
    assert kind is ExitJson and result['changed'] and pool.deleted == ['x']
    assert result['before']['x']['wwn'] == 'wwn-x' and result['after']['x'] is None


@pytest.mark.parametrize('args', [
    {'vdisks': [{'name': 'x'}], 'size': '2G'},
    {'vdisks': [{'name': 'x'}], 'partitions': [{'size': '1G'}]},
    {'name': 'x', 'purge': True},
    {'vdisks': [{'name': 'x', 'colour': 'red'}]},
])
def test_conflicting_or_unknown_options_are_refused(pool, args):
    kind, result = run(args)
    assert kind is FailJson and pool.deleted == []


def test_purge_without_force_reports(pool):
    kind, result = run({'vdisks': [], 'purge': True})
    assert kind is ExitJson and not result['changed'] and result['unlisted'] == ['x'] and pool.deleted == []
