# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Round-trip properties of the target engine over seeded random declarations and live states.

For each case: a declared target and a random live target (absent, without
TPG, disabled, extra portals/LUNs/ACLs, mapped LUNs under other numbers,
partly write-protected, other CHAP, other attribute values) on the rtslib
model. The plan must not touch LIO, applying it must make the target read
back exactly as declared with nothing left to plan, and a failure at any
configfs change must leave LIO as it was.
"""

from __future__ import annotations

import random
import string

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio, lio_target

SEED = 20261101
CASES = 300
ROLLBACK_CASES = 40

IQN = 'iqn.2026-11.io.clusterducks:node01'
BYSTANDER = 'iqn.2026-11.io.clusterducks:bystander'
INITIATORS = ['iqn.2026-11.io.clusterducks:device.node%02d' % n for n in range(4)]
STRAY = 'iqn.1994-05.com.redhat:stray'
VDISKS = ['v%d' % n for n in range(5)]
PORTALS = [('0.0.0.0', 3260), ('10.77.0.11', 3260), ('10.77.0.11', 3261), ('fd00::11', 3260)]
ATTRIBUTES = {
    'login_timeout': lambda r: r.randint(5, 30),
    'default_cmdsn_depth': lambda r: r.choice([16, 64, 128]),
    'netif_timeout': lambda r: r.randint(2, 10),
    'prod_mode_write_protect': lambda r: r.random() < 0.5,
    'demo_mode_discovery': lambda r: r.random() < 0.5,
}
LIVE_ONLY_ATTRIBUTES = {  # normalize() always declares these
    'authentication': lambda r: r.random() < 0.5,
    'generate_node_acls': lambda r: r.random() < 0.5,
    'demo_mode_write_protect': lambda r: r.random() < 0.5,
}
PARAMETERS = {
    'HeaderDigest': lambda r: r.choice(['None', 'CRC32C', 'CRC32C,None']),
    'DataDigest': lambda r: r.choice(['None', 'CRC32C,None']),
    'MaxConnections': lambda r: r.randint(1, 4),
    'TargetAlias': lambda r: r.choice(['LIO Target', 'node01']),
}


def secret(r, prefix):
    return prefix + ''.join(r.choice(string.ascii_letters + string.digits) for _char in range(r.randint(11, 20)))


def value(v):
    return ('1' if v else '0') if isinstance(v, bool) else str(v)


def declared(r):
    lun_ids = r.sample(range(6), r.randint(0, 4))
    luns = [{'lun': n, 'vdisk': v} for n, v in zip(lun_ids, r.sample(VDISKS, len(lun_ids)))]
    with_chap = r.random() < 0.5
    initiators = []
    for node in r.sample(INITIATORS, r.randint(0, 3)):
        init = {'iqn': node}
        if with_chap:
            init['chap'] = {'userid': 'user-' + node[-6:], 'password': secret(r, 'c')}
            if r.random() < 0.5:
                init['mutual_chap'] = {'userid': 'storage1', 'password': secret(r, 'm')}
        if r.random() < 0.5:
            init['luns'] = r.sample(lun_ids, r.randint(0, len(lun_ids)))
        if r.random() < 0.6:
            init['write_protect'] = r.random() < 0.5
        initiators.append(init)
    spec = {
        'iqn': IQN,
        'portals': [{'ip': ip, 'port': port} for ip, port in r.sample(PORTALS, r.randint(0, 3))],
        'luns': luns,
        'initiators': initiators,
        'attributes': {k: f(r) for k, f in ATTRIBUTES.items() if r.random() < 0.4},
        'parameters': {k: f(r) for k, f in PARAMETERS.items() if r.random() < 0.3},
    }
    return lio_target.normalize(spec)


def portal_ip(ip):
    return '[%s]' % ip if ':' in ip else ip


def build_live(r, model, iqn, tpg2=True):
    """A random live target ``iqn`` (or none) made through the rtslib API."""
    rt = model.rtslib
    roll = r.random()
    if roll < 0.15:
        return
    target = rt.Target(rt.FabricModule('iscsi'), iqn)
    if roll < 0.22:
        return  # a target without TPG 1
    tpg = rt.TPG(target, 1)
    tpg.enable = r.random() < 0.7
    for ip, port in r.sample(PORTALS, r.randint(0, 3)):
        rt.NetworkPortal(tpg, portal_ip(ip), port)
    lun_ids = r.sample(range(8), r.randint(0, 5))
    for n in lun_ids:
        name = r.choice(VDISKS + ['blk'])
        so = model.rtslib.FileIOStorageObject(name) if name != 'blk' else model.blk
        rt.LUN(tpg, n, so)
    for node in r.sample(INITIATORS + [STRAY], r.randint(0, 4)):
        acl = rt.NodeACL(tpg, node)
        if r.random() < 0.5:
            acl.chap_userid, acl.chap_password = 'user-' + node[-6:], secret(r, 'c')
            if r.random() < 0.3:
                acl.chap_mutual_userid, acl.chap_mutual_password = 'storage1', secret(r, 'm')
        for mapped in r.sample(range(8), r.randint(0, 4) if lun_ids else 0):
            rt.MappedLUN(acl, mapped, r.choice(lun_ids), r.random() < 0.5)
    for name, f in list(ATTRIBUTES.items()) + list(LIVE_ONLY_ATTRIBUTES.items()):
        if r.random() < 0.5:
            tpg.set_attribute(name, value(f(r)))
    for name, f in PARAMETERS.items():
        if r.random() < 0.3:
            tpg.set_parameter(name, value(f(r)))
    if tpg2 and r.random() < 0.1:
        rt.NetworkPortal(rt.TPG(target, 2), '0.0.0.0', 3261)  # not ours: must stay


@pytest.fixture
def host(lio_model):
    for name in VDISKS:
        lio_model.add_vdisk(name)
    lio_model.blk = lio_model.add_storage_object('block', 'blk', dev='/dev/vg0/blk')
    tpg = lio_model.iscsi_target(BYSTANDER)
    lio_model.rtslib.LUN(tpg, 0, lio_model.rtslib.FileIOStorageObject('v0'))
    tpg.enable = True
    lio_model.empty = lio_model.snapshot()
    return lio_model


def live(desired):
    target = lio_target.lookup(IQN)
    return None if target is None else lio_target.read(target, desired)


def bystander(model):
    return [t for t in model.view()['targets'] if t['wwn'] == BYSTANDER]


def test_converge_round_trips(host):
    r = random.Random(SEED)
    for case in range(CASES):
        host.restore(host.empty)
        desired = declared(r)
        build_live(r, host, IQN)
        current = live(desired)
        dump, changes, others = host.dump(), host.mutations, bystander(host)
        where = 'case %d: declared %r, live %r' % (case, desired, current)

        plan = lio_target.converge(desired, current, dry_run=True)
        assert host.dump() == dump and host.mutations == changes, where  # dry run changes nothing
        assert (plan == []) == (current == desired), where

        assert lio_target.converge(desired, current, dry_run=False) == plan, where
        after = live(desired)
        assert after == desired, where
        assert lio_target.converge(desired, after, dry_run=True) == [], where
        assert bystander(host) == others, where


@pytest.mark.parametrize('state', ['present', 'absent'])
def test_a_failure_at_any_change_leaves_lio_as_it_was(host, state):
    r = random.Random(SEED + 1)
    root = host.rtslib.RTSRoot()
    cases = 0
    while cases < ROLLBACK_CASES:
        host.restore(host.empty)
        desired = declared(r) if state == 'present' else {'iqn': IQN}
        build_live(r, host, IQN, tpg2=False)  # a deleted target comes back with its TPG 1 only
        start, before = host.snapshot(), host.view()
        _results, steps, _warnings = lio_target.plan([(state, desired)], check_mode=False)
        if not steps:
            continue
        cases += 1
        changes = host.mutations
        lio.apply_changes(root, steps)
        changes = host.mutations - changes
        for nth in range(1, changes + 1):
            host.restore(start)
            _results, steps, _warnings = lio_target.plan([(state, desired)], check_mode=False)
            host.fail_at(nth)
            with pytest.raises(lio.ChangeFailed, match='LIO and its save file are as before this run'):
                lio.apply_changes(root, steps)
            host.heal()
            assert host.view() == before, 'case %d: failure at change %d of %d' % (cases, nth, changes)
