# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import rules

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def test_the_service_uses_the_module_utils_rules():
    # The API (authoritative) and the modules (early checks) apply the same
    # rules from one file: the service's rules.py is a link to module_utils'
    # (the role's copy follows it when it installs the service).
    service = os.path.join(REPO, 'roles', 'storage_api', 'files', 'vdisk_api', 'rules.py')
    assert os.path.islink(service)
    assert os.path.realpath(service) == os.path.realpath(
        os.path.join(REPO, 'plugins', 'module_utils', 'rules.py'))


def test_seed_example_normalizes():
    record = rules.normalize_assignment({
        'device': 'node01', 'vdisk': 'node01', 'mounts': {0: 'data'},
        'overlayfs': {'enabled': True, 'upper': '/data/overlayfs', 'work': '/data/workdir'}})
    assert record == {
        'device': 'node01', 'vdisk': 'node01', 'target': None,
        'initiator_iqn': 'iqn.2024-01.org.clusterducks.device:node01',
        'overlayfs': {'enabled': True, 'lower': '/', 'upper': '/data/overlayfs', 'work': '/data/workdir'},
        'mounts': {'0': 'data'}, 'frozen': True}


def test_mounts_sorted_parents_first():
    assert list(rules.normalize_mounts({'2': 'data/sub', '1': 'data', '3': 'aa'}).items()) == [
        ('3', 'aa'), ('1', 'data'), ('2', 'data/sub')]


@pytest.mark.parametrize('mounts', [{'1': '/data'}, {'1': 'a/../b'}, {'1': ''}, {'x': 'a'}, {'-1': 'a'},
                                    {'1': 'a', '2': 'a'}, {'1': 'a b'}, {'1': 'a\nb'}, {'999': 'a'}, ['a']])
def test_bad_mounts(mounts):
    with pytest.raises(rules.RuleError):
        rules.normalize_mounts(mounts)


def test_nested_mounts_pick_the_deepest_filesystem():
    mounts = rules.normalize_mounts({'1': 'data', '2': 'data/sub'})
    rules.normalize_overlay({'enabled': True, 'upper': '/data/sub/u', 'work': '/data/sub/w'}, mounts)
    with pytest.raises(rules.RuleError, match='same filesystem'):
        rules.normalize_overlay({'enabled': True, 'upper': '/data/sub/u', 'work': '/data/w'}, mounts)


def test_disabled_overlay_needs_no_upper():
    assert rules.normalize_overlay({'enabled': False}, {})['upper'] is None


def test_partitions_against_metadata():
    vdisk = {'name': 'v', 'filesystem': 'none', 'partitions': [{'number': 1, 'filesystem': 'xfs'}]}
    rules.check_partitions({'1': 'data'}, vdisk)
    for mounts in ({'2': 'x'}, {'0': 'x'}):
        with pytest.raises(rules.RuleError):
            rules.check_partitions(mounts, vdisk)
    rules.check_partitions({'0': 'data'}, {'name': 'w', 'filesystem': 'xfs', 'partitions': []})


@pytest.mark.parametrize('device', ['node01', 'a', 'rack1-node.07'])
def test_good_devices(device):
    assert rules.check_device(device) == device


@pytest.mark.parametrize('device', ['', 'Node', '-a', 'a/b', 'a_b', "a'", 'a' * 64, None, 5])
def test_bad_devices(device):
    with pytest.raises(rules.RuleError):
        rules.check_device(device)


# One rule per kind of value: whatever the modules accept the API accepts and
# the reverse (the modules' checks are the API's rules behind ValidationError).
NAMES = ['node01', 'X' * 63, 'X' * 64, 'a..b', 'node01\n', 'a/b', '.x', 'n\x00', 'Node-01.data_2', '']
IQNS = ['iqn.2026-11.io.clusterducks:node01', 'iqn.2026-13.io.x:a', 'IQN.2026-11.io.x:a', 'iqn.2026-11.io.x:A',
        'iqn.2026-11.io.x:a\n', 'eui.0123456789abcdef', 'iqn.2026-11.io.x:' + 'a' * 210,
        'iqn.2026-11.io.x:' + 'a' * 220]


def _accepts(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize('name', NAMES)
def test_vdisk_names_one_rule(name):
    from ansible_collections.clusterducks.vdisk.plugins.module_utils import validation
    assert _accepts(validation.check_name, name) == _accepts(rules.check_vdisk, name)
    assignment = {'device': 'node01', 'vdisk': name}
    assert _accepts(rules.normalize_assignment, assignment) == _accepts(rules.check_vdisk, name)


@pytest.mark.parametrize('iqn', IQNS)
def test_iqns_one_rule(iqn):
    from ansible_collections.clusterducks.vdisk.plugins.module_utils import validation
    api_target = _accepts(rules.normalize_assignment, {'device': 'node01', 'vdisk': 'v', 'target': iqn})
    api_initiator = _accepts(rules.normalize_assignment, {'device': 'node01', 'vdisk': 'v', 'initiator_iqn': iqn})
    assert _accepts(validation.check_iqn, iqn) == api_target
    if iqn.startswith('iqn.'):
        assert api_initiator == api_target


@pytest.mark.parametrize('text,expected', [
    ('10G', 10 << 30), ('10GiB', 10 << 30), ('10GB', 10 * 10 ** 9 + (-(10 * 10 ** 9) % (1 << 20))), ('512M', 512 << 20),
    ('1.5T', 3 << 39), (1048576, 1 << 20), ('1', 1 << 20),
])
def test_one_size_parser(text, expected):
    assert rules.parse_size(text) == expected


@pytest.mark.parametrize('text', ['10G\nx', '-1G', '0', '1X', True, '1 0G', '\u00b2G'])
def test_sizes_rejected(text):
    with pytest.raises(rules.RuleError):
        rules.parse_size(text)


@pytest.mark.parametrize('overlay', [
    {'enabled': True, 'lower': '/data/overlayfs', 'upper': '/data/overlayfs', 'work': '/data/workdir'},
    {'enabled': True, 'lower': '/data/overlayfs/x', 'upper': '/data/overlayfs', 'work': '/data/workdir'},
    {'enabled': True, 'lower': '/data/workdir', 'upper': '/data/overlayfs', 'work': '/data/workdir'},
])
def test_lower_never_inside_upper_or_work(overlay):
    with pytest.raises(rules.RuleError, match='lower'):
        rules.normalize_overlay(overlay, {'0': 'data'})


def test_overlay_default_is_shared():
    assert rules.normalize_overlay({}, {})['enabled'] is rules.OVERLAY_ENABLED_DEFAULT


@pytest.mark.parametrize('iqn', IQNS + ['iqn.2026-11.io.x:a_b', 'iqn.2026-11.localhost:x', 'naa.5001405abcdef012',
                                        'naa.6001405abcdef0123456789abcdef012', 'eui.0123456789ABCDEF'])
def test_every_name_the_rules_accept_lio_takes_as_written(iqn):
    # rtslib-fb's own check (as the writable model replicates it from 2.1.75).
    from ansible_collections.clusterducks.vdisk.tests.unit import rtslib_model
    if _accepts(rules.check_iqn, iqn, 'iqn', allow_eui_naa=True):
        assert rtslib_model.normalize_wwn(('naa', 'eui', 'iqn'), iqn)[0] == iqn
