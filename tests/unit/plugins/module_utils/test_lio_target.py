# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Target validation and planning (the dry-run walk). Applying it to a real
LIO is the storage_host lab scenario's job."""

from __future__ import annotations

import copy
import json

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio_target
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import ValidationError

IQN = 'iqn.2026-11.io.clusterducks:node01'
INIT = 'iqn.2026-11.io.clusterducks:device.node01'
CHAP = {'userid': 'node01', 'password': 'chap-secret-0001'}
MUTUAL = {'userid': 'storage', 'password': 'mutual-secret-01'}


def spec(**over):
    s = {'iqn': IQN, 'portals': [{'ip': '10.77.0.11', 'port': 3260}], 'luns': [{'lun': 0, 'vdisk': 'node01'}],
         'initiators': [{'iqn': INIT, 'chap': CHAP, 'mutual_chap': MUTUAL}]}
    s.update(over)
    return s


def test_normalize_fills_defaults():
    d = lio_target.normalize({'iqn': IQN, 'luns': [{'lun': 3, 'vdisk': 'a'}, {'lun': 1, 'vdisk': 'b'}],
                              'initiators': [{'iqn': INIT}]})
    assert d['portals'] == [{'ip': '0.0.0.0', 'port': 3260}]
    assert [x['lun'] for x in d['luns']] == [1, 3]
    # every LUN by default, under its own number
    assert d['initiators'][0]['mapped_luns'] == [{'mapped_lun': n, 'tpg_lun': n, 'write_protect': False} for n in (1, 3)]
    assert d['attributes'] == {'generate_node_acls': '0', 'cache_dynamic_acls': '0',
                               'demo_mode_write_protect': '1', 'authentication': '0'}


def test_normalize_chap_turns_authentication_on_and_keeps_user_attributes():
    d = lio_target.normalize(spec(attributes={'login_timeout': 10, 'authentication': True}))
    assert d['attributes']['authentication'] == '1'
    assert d['attributes']['login_timeout'] == '10'


@pytest.mark.parametrize('over,message', [
    ({'iqn': 'bad'}, 'expected iqn'),
    ({'portals': [{'ip': 'storage1'}]}, 'not an IP address'),
    ({'portals': [{'ip': '10.0.0.1', 'port': 70000}]}, 'not a TCP port'),
    ({'portals': [{'ip': '10.0.0.1'}, {'ip': '10.0.0.1', 'port': 3260}]}, 'listed twice'),
    ({'luns': [{'lun': 0, 'vdisk': 'a'}, {'lun': 0, 'vdisk': 'b'}]}, 'used twice'),
    ({'luns': [{'lun': 0, 'vdisk': 'a'}, {'lun': 1, 'vdisk': 'a'}]}, 'exported twice'),
    ({'luns': [{'lun': 256, 'vdisk': 'a'}]}, 'from 0 to 255'),
    ({'luns': [{'lun': 0, 'vdisk': '../a'}]}, 'no ".."'),
    ({'initiators': [{'iqn': INIT}, {'iqn': INIT}]}, 'listed twice'),
    ({'initiators': [{'iqn': INIT, 'luns': [0, 4]}]}, 'maps LUN 4'),
    ({'initiators': [{'iqn': INIT, 'mutual_chap': MUTUAL}]}, 'needs chap too'),
    ({'initiators': [{'iqn': INIT, 'chap': CHAP, 'mutual_chap': dict(MUTUAL, password=CHAP['password'])}]},
     'must differ'),
    ({'initiators': [{'iqn': INIT, 'chap': CHAP}, {'iqn': INIT + 'b'}]}, 'some initiators'),
    ({'initiators': [{'iqn': INIT, 'chap': {'userid': 'x'}}]}, 'exactly userid and password'),
    ({'attributes': {'nope': 1}}, 'unknown TPG attribute'),
    ({'parameters': {'nope': 1}}, 'unknown TPG parameter'),
])
def test_normalize_rejects(over, message):
    with pytest.raises(ValidationError, match=message):
        lio_target.normalize(spec(**over))


def live(desired):
    """What read() would return for a target that matches ``desired`` exactly."""
    return copy.deepcopy(desired)


def test_a_new_target_is_planned_whole():
    d = lio_target.normalize(spec())
    actions = lio_target.converge(d, None, dry_run=True)
    assert actions[:3] == ['create target %s' % IQN, 'add portal 10.77.0.11:3260', 'add LUN 0: vDisk node01']
    assert 'set CHAP for %s' % INIT in actions and 'set mutual CHAP for %s' % INIT in actions
    assert 'map LUN 0 for %s' % INIT in actions
    assert not any(CHAP['password'] in a or MUTUAL['password'] in a for a in actions)


def test_a_matching_target_needs_nothing():
    d = lio_target.normalize(spec())
    assert lio_target.converge(d, live(d), dry_run=True) == []


def test_only_the_differences_are_planned_and_removals_come_last():
    d = lio_target.normalize(spec(attributes={'login_timeout': 20}))
    cur = live(d)
    cur['attributes']['login_timeout'] = '10'
    cur['portals'].append({'ip': '10.77.0.99', 'port': 3260})
    cur['luns'].append({'lun': 5, 'vdisk': 'old'})
    cur['initiators'].append({'iqn': INIT + 'x', 'chap': None, 'mutual_chap': None, 'mapped_luns': []})
    cur['initiators'][0]['chap'] = dict(CHAP, password='old-chap-secret1')
    actions = lio_target.converge(d, cur, dry_run=True)
    assert actions == [
        'set CHAP for %s' % INIT,
        'set attribute login_timeout=20',
        'remove initiator %sx' % INIT,
        'remove LUN 5 (old)',
        'remove portal 10.77.0.99:3260',
    ]


def test_a_lun_pointing_at_another_vdisk_is_replaced_and_remapped():
    d = lio_target.normalize(spec())
    cur = live(d)
    cur['luns'][0]['vdisk'] = 'other'
    actions = lio_target.converge(d, cur, dry_run=True)
    assert actions[:2] == ['remove LUN 0 (other) to replace it', 'add LUN 0: vDisk node01']
    assert 'map LUN 0 for %s' % INIT in actions  # the LUN's removal dropped the mapping


def test_write_protect_and_unmapping():
    d = lio_target.normalize(spec(luns=[{'lun': 0, 'vdisk': 'a'}, {'lun': 1, 'vdisk': 'b'}],
                                  initiators=[{'iqn': INIT, 'luns': [0], 'write_protect': True}]))
    cur = live(d)
    cur['initiators'][0]['mapped_luns'] = [{'mapped_lun': n, 'tpg_lun': n, 'write_protect': False} for n in (0, 1)]
    assert lio_target.converge(d, cur, dry_run=True) == [
        'set LUN 0 read-only for %s' % INIT, 'unmap LUN 1 for %s' % INIT]


def test_masked_hides_secrets_and_marks_changes():
    d = lio_target.normalize(spec())
    cur = live(d)
    cur['initiators'][0]['chap'] = dict(CHAP, password='old-chap-secret1')
    before, after = lio_target.masked(cur), lio_target.masked(d, cur)
    text = json.dumps([before, after])
    assert CHAP['password'] not in text and 'old-chap-secret1' not in text and MUTUAL['password'] not in text
    assert after['initiators'][0]['chap']['password'] == '******** (changed)'
    assert after['initiators'][0]['mutual_chap']['password'] == '********'
    assert before['initiators'][0]['chap']['userid'] == 'node01'


def test_discovery_auth():
    assert lio_target.normalize_discovery({'enabled': False}) == {'enabled': False, 'chap': None, 'mutual_chap': None}
    with pytest.raises(ValidationError, match='needs chap'):
        lio_target.normalize_discovery({'enabled': True})
    d = lio_target.normalize_discovery({'enabled': True, 'chap': CHAP})
    assert lio_target.converge_discovery(None, d, d, dry_run=True) == []
    assert lio_target.converge_discovery(None, d, dict(d, enabled=False), dry_run=True) == [
        'set discovery authentication (on)']
