# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The target engine against the writable rtslib model: plans, applies and reads back."""

from __future__ import annotations

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio_target

IQN = 'iqn.2026-11.io.clusterducks:node01'
INIT = 'iqn.2026-11.io.clusterducks:device.node01'


@pytest.fixture
def host(lio_model):
    for name in ('a', 'b'):
        lio_model.add_vdisk(name)
    return lio_model


def declare(**over):
    spec = {'iqn': IQN, 'luns': [{'lun': 0, 'vdisk': 'a'}, {'lun': 1, 'vdisk': 'b'}],
            'initiators': [{'iqn': INIT}]}
    spec.update(over)
    return lio_target.normalize(spec)


def live(desired):
    target = lio_target.lookup(desired['iqn'])
    return None if target is None else lio_target.read(target, desired)


def converge(desired):
    """Apply ``desired``; return the actions. The target must then read back as declared."""
    actions = lio_target.converge(desired, live(desired), dry_run=False)
    assert live(desired) == desired
    assert lio_target.converge(desired, live(desired), dry_run=True) == []
    return actions


def mapped(host, node=INIT):
    r = host.rtslib
    acl = r.NodeACL(r.TPG(lio_target.lookup(IQN), 1, 'lookup'), node, 'lookup')
    return sorted((m.mapped_lun, m.tpg_lun.lun, m.write_protect) for m in acl.mapped_luns)


@pytest.mark.parametrize('declared', [True, False])
def test_partly_write_protected_initiator_is_not_converged(host, declared):
    """Bug: read() took any() over the mapped LUNs, so a half read-only initiator read as converged."""
    d = declare(initiators=[{'iqn': INIT, 'write_protect': declared}])
    converge(d)
    r = host.rtslib
    acl = r.NodeACL(r.TPG(lio_target.lookup(IQN), 1, 'lookup'), INIT, 'lookup')
    r.MappedLUN(acl, 1).write_protect = not declared
    state = 'read-only' if declared else 'read-write'
    assert lio_target.converge(d, live(d), dry_run=True) == ['set LUN 1 %s for %s' % (state, INIT)]
    converge(d)
    assert mapped(host) == [(0, 0, declared), (1, 1, declared)]


def test_a_mapping_under_another_number_is_remapped_in_one_action(host):
    """Bug: mapped LUN 0 -> TPG LUN 1 planned 'map LUN 0' before 'unmap LUN 0'; the map failed (exists)."""
    d = declare(initiators=[{'iqn': INIT, 'luns': [0]}])
    converge(d)
    r = host.rtslib
    acl = r.NodeACL(r.TPG(lio_target.lookup(IQN), 1, 'lookup'), INIT, 'lookup')
    r.MappedLUN(acl, 0).delete()
    r.MappedLUN(acl, 0, 1, False)
    assert lio_target.converge(d, live(d), dry_run=True) == ['remap LUN 0 for %s (was TPG LUN 1)' % INIT]
    assert converge(d) == ['remap LUN 0 for %s (was TPG LUN 1)' % INIT]
    assert mapped(host) == [(0, 0, False)]


def test_a_stray_mapping_is_unmapped_and_the_right_one_kept(host):
    d = declare()
    converge(d)
    r = host.rtslib
    acl = r.NodeACL(r.TPG(lio_target.lookup(IQN), 1, 'lookup'), INIT, 'lookup')
    r.MappedLUN(acl, 7, 0, True)
    assert lio_target.converge(d, live(d), dry_run=True) == ['unmap LUN 7 for %s' % INIT]
    converge(d)
    assert mapped(host) == [(0, 0, False), (1, 1, False)]


def test_an_ipv6_portal_is_made_in_brackets_and_reads_back_plain(host):
    d = declare(portals=[{'ip': 'fd00::11'}, {'ip': '10.77.0.11', 'port': 3261}])
    assert 'add portal fd00::11:3260' in converge(d)
    tpg = host.rtslib.TPG(lio_target.lookup(IQN), 1, 'lookup')
    assert sorted((p.ip_address, p.port) for p in tpg.network_portals) == [('10.77.0.11', 3261), ('[fd00::11]', 3260)]
    assert converge(declare()) == ['add portal 0.0.0.0:3260', 'remove portal 10.77.0.11:3261',
                                   'remove portal fd00::11:3260']


def test_a_disabled_tpg_or_a_missing_one_is_not_converged(host):
    d = declare()
    actions = converge(d)
    assert actions[0] == 'create target %s' % IQN and actions[-1] == 'enable TPG 1'  # enabled once complete
    tpg = host.rtslib.TPG(lio_target.lookup(IQN), 1, 'lookup')
    tpg.enable = False
    assert live(d)['enabled'] is False
    assert converge(d) == ['enable TPG 1']
    tpg.delete()
    assert live(d)['enabled'] is None
    assert converge(d)[:2] == ['create TPG 1', 'add portal 0.0.0.0:3260']


def test_restore_puts_back_a_lun_of_another_backstore(host):
    r = host.rtslib
    blk = host.add_storage_object('rd_mcp', 'blk')
    tpg = host.iscsi_target(IQN)
    r.MappedLUN(r.NodeACL(tpg, INIT), 0, r.LUN(tpg, 0, blk), True)
    tpg.enable = True
    before = live(declare())
    assert before['luns'] == [{'lun': 0, 'vdisk': 'rd_mcp/blk'}]
    converge(declare())
    lio_target.restore(IQN, before)
    assert live(declare()) == before


def test_initiator_attributes_are_set_per_acl_and_undeclared_ones_kept(host):
    d = declare(initiators=[{'iqn': INIT, 'attributes': {'dataout_timeout': 10, 'nopin_response_timeout': '60'}}])
    assert converge(d) == [
        'create target %s' % IQN, 'add portal 0.0.0.0:3260', 'add LUN 0: vDisk a', 'add LUN 1: vDisk b',
        'add initiator %s' % INIT,
        'map LUN 0 for %s' % INIT, 'map LUN 1 for %s' % INIT,
        'set attribute dataout_timeout=10 for %s' % INIT, 'set attribute nopin_response_timeout=60 for %s' % INIT,
        'set attribute authentication=0', 'set attribute cache_dynamic_acls=0',
        'set attribute demo_mode_write_protect=1', 'set attribute generate_node_acls=0', 'enable TPG 1']
    r = host.rtslib
    acl = r.NodeACL(r.TPG(lio_target.lookup(IQN), 1, 'lookup'), INIT, 'lookup')
    assert (acl.get_attribute('dataout_timeout'), acl.get_attribute('nopin_timeout')) == ('10', '15')
    # Drift on a declared attribute is put back; one nobody declared is left alone.
    acl.set_attribute('dataout_timeout', '3')
    acl.set_attribute('nopin_timeout', '20')
    assert converge(d) == ['set attribute dataout_timeout=10 for %s' % INIT]
    assert acl.get_attribute('nopin_timeout') == '20'


def test_a_deleted_target_comes_back_with_its_initiator_attributes(host):
    d = declare(initiators=[{'iqn': INIT, 'attributes': {'dataout_timeout': 10}}])
    converge(d)
    target = lio_target.lookup(IQN)
    before = lio_target.read(target, lio_target.all_keys(target))
    assert before['initiators'][0]['attributes']['dataout_timeout'] == '10'
    assert before['initiators'][0]['attributes']['nopin_timeout'] == '15'
    lio_target.delete(IQN, dry_run=False)
    lio_target.restore(IQN, before)
    target = lio_target.lookup(IQN)
    assert lio_target.read(target, lio_target.all_keys(target)) == before


def test_an_unknown_initiator_attribute_is_refused_before_anything_changes(host):
    with pytest.raises(lio_target.ValidationError, match="initiator .*: unknown ACL attribute 'login_timeout'"):
        declare(initiators=[{'iqn': INIT, 'attributes': {'login_timeout': 10}}])
    assert lio_target.lookup(IQN) is None
