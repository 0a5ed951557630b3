# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Declarative iSCSI targets on LIO: validate, read, diff and converge.

A declared target is one TPG (tag 1) with portals, LUNs (each a vDisk's
backstore), initiator ACLs with CHAP / mutual CHAP and their mapped LUNs, and
TPG attributes and parameters. ``converge()`` walks the declared and live
target once and either lists what differs (check mode) or changes exactly
that, so the plan shown and the change made can never disagree. Everything
not declared (portals, LUNs, ACLs, mappings) is removed; attributes and
parameters not declared are left as they are.

An initiator's LUNs are kept as LIO has them, one entry per mapped LUN
(``mapped_lun``, ``tpg_lun``, ``write_protect``): a mapping under the wrong
number or with the wrong write-protect is then a difference like any other.
"""

from __future__ import annotations

import functools
import ipaddress

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio, lio_backstore
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import (
    ValidationError,
    check_chap,
    check_iqn,
    check_name,
    check_port,
)

TPG_TAG = 1
MAX_LUN = 255
HIDDEN = '********'

# TPG attributes and RFC 3720 parameters of the iSCSI fabric (Linux 6.1).
TPG_ATTRIBUTES = frozenset((
    'authentication', 'cache_dynamic_acls', 'default_cmdsn_depth', 'default_erl', 'demo_mode_discovery',
    'demo_mode_write_protect', 'fabric_prot_type', 'generate_node_acls', 'login_keys_workaround',
    'login_timeout', 'netif_timeout', 'prod_mode_write_protect', 't10_pi', 'tpg_enabled_sendtargets',
))
# Per initiator (node ACL): the target's timeouts for that initiator's connections.
ACL_ATTRIBUTES = frozenset((
    'dataout_timeout', 'dataout_timeout_retries', 'default_erl', 'nopin_response_timeout', 'nopin_timeout',
    'random_datain_pdu_offsets', 'random_datain_seq_offsets', 'random_r2t_offsets',
))
TPG_PARAMETERS = frozenset((
    'AuthMethod', 'DataDigest', 'DataPDUInOrder', 'DataSequenceInOrder', 'DefaultTime2Retain',
    'DefaultTime2Wait', 'ErrorRecoveryLevel', 'FirstBurstLength', 'HeaderDigest', 'IFMarkInt', 'IFMarker',
    'ImmediateData', 'InitialR2T', 'MaxBurstLength', 'MaxConnections', 'MaxOutstandingR2T',
    'MaxRecvDataSegmentLength', 'MaxXmitDataSegmentLength', 'OFMarkInt', 'OFMarker', 'TargetAlias',
))


def _value(value):
    """configfs speaks strings: True -> '1', 3260 -> '3260'."""
    if isinstance(value, bool):
        return '1' if value else '0'
    return str(value)


def _attributes(values, known, what, kind):
    """Declared attributes or parameters as configfs strings; unknown names are refused."""
    out = {}
    for name, value in (values or {}).items():
        if name not in known:
            raise ValidationError('%s: unknown %s %r (known: %s)' % (what, kind, name, ', '.join(sorted(known))))
        out[name] = _value(value)
    return out


def _chap(entry, key, what):
    cred = entry.get(key)
    if not cred:
        return None
    if not isinstance(cred, dict) or set(cred) != {'userid', 'password'}:
        raise ValidationError('%s: %s needs exactly userid and password' % (what, key))
    check_chap(cred['userid'], cred['password'], '%s %s' % (what, key))
    return {'userid': cred['userid'], 'password': cred['password']}


def normalize(spec):
    """Validate one declared target and return it in the canonical form ``read()`` returns."""
    iqn = check_iqn(spec.get('iqn'), 'target IQN')
    what = 'target %s' % iqn

    portals = []
    for p in spec.get('portals') or [{'ip': '0.0.0.0', 'port': 3260}]:
        try:
            ip = str(ipaddress.ip_address(p.get('ip')))
        except ValueError:
            raise ValidationError('%s: portal address %r is not an IP address' % (what, p.get('ip')))
        portal = {'ip': ip, 'port': check_port(p.get('port') or 3260, '%s portal port' % what)}
        if portal in portals:
            raise ValidationError('%s: portal %s:%d is listed twice' % (what, ip, portal['port']))
        portals.append(portal)

    luns, lun_ids, vdisks = [], set(), set()
    for entry in spec.get('luns') or []:
        lun = entry.get('lun')
        if isinstance(lun, bool) or not isinstance(lun, int) or not 0 <= lun <= MAX_LUN:
            raise ValidationError('%s: LUN id %r must be a number from 0 to %d' % (what, lun, MAX_LUN))
        if lun in lun_ids:
            raise ValidationError('%s: LUN id %d is used twice' % (what, lun))
        vdisk = check_name(entry.get('vdisk'), '%s LUN %d vDisk' % (what, lun))
        if vdisk in vdisks:
            raise ValidationError('%s: vDisk %s is exported twice' % (what, vdisk))
        lun_ids.add(lun)
        vdisks.add(vdisk)
        luns.append({'lun': lun, 'vdisk': vdisk})

    initiators, seen = [], set()
    for entry in spec.get('initiators') or []:
        node = check_iqn(entry.get('iqn'), '%s initiator IQN' % what)
        if node in seen:
            raise ValidationError('%s: initiator %s is listed twice' % (what, node))
        seen.add(node)
        who = '%s initiator %s' % (what, node)
        chap = _chap(entry, 'chap', who)
        mutual = _chap(entry, 'mutual_chap', who)
        if mutual and not chap:
            raise ValidationError('%s: mutual_chap needs chap too (the target answers a challenge only after '
                                  'the initiator has answered its own)' % who)
        if mutual and mutual['password'] == chap['password']:
            raise ValidationError('%s: the mutual CHAP secret must differ from the CHAP secret (RFC 7143)' % who)
        mapped = entry.get('luns')
        mapped = sorted(lun_ids) if mapped is None else sorted(set(mapped))
        unknown = [m for m in mapped if m not in lun_ids]
        if unknown:
            raise ValidationError('%s: maps LUN %s, which the target does not have' % (who, unknown[0]))
        # Each LUN under its own number; write-protect is per mapped LUN in LIO.
        protect = bool(entry.get('write_protect', False))
        initiators.append({'iqn': node, 'chap': chap, 'mutual_chap': mutual,
                           'mapped_luns': [_mapping(m, m, protect) for m in mapped],
                           'attributes': _attributes(entry.get('attributes'), ACL_ATTRIBUTES, who, 'ACL attribute')})
    with_chap = [i['iqn'] for i in initiators if i['chap']]
    if with_chap and len(with_chap) != len(initiators):
        raise ValidationError('%s: CHAP is on for some initiators and off for others; LIO enforces it per '
                              'target (attribute authentication), so give every initiator CHAP or none' % what)

    attributes = {'generate_node_acls': '0', 'cache_dynamic_acls': '0', 'demo_mode_write_protect': '1',
                  'authentication': '1' if with_chap else '0'}
    attributes.update(_attributes(spec.get('attributes'), TPG_ATTRIBUTES, what, 'TPG attribute'))
    parameters = _attributes(spec.get('parameters'), TPG_PARAMETERS, what, 'TPG parameter')

    return {
        'iqn': iqn,
        'enabled': True,
        'portals': sorted(portals, key=lambda p: (p['ip'], p['port'])),
        'luns': sorted(luns, key=lambda x: x['lun']),
        'initiators': sorted(initiators, key=lambda i: i['iqn']),
        'attributes': attributes,
        'parameters': parameters,
    }


def lookup(iqn):
    return lio.lookup_target(iqn)


def _tpg(target):
    for tpg in target.tpgs:
        if tpg.tag == TPG_TAG:
            return tpg
    return None


def _mapping(mapped_lun, tpg_lun, write_protect):
    return {'mapped_lun': mapped_lun, 'tpg_lun': tpg_lun, 'write_protect': bool(write_protect)}


def _cred(obj, userid, password):
    user = getattr(obj, userid)
    return {'userid': user, 'password': getattr(obj, password)} if user else None


def _acl_keys(keys):
    """The ACL attribute names ``read()`` reports: all_keys()' list, or every name an initiator declares."""
    if 'initiator_attributes' in keys:
        return keys['initiator_attributes']
    return set(name for init in keys.get('initiators') or () for name in init.get('attributes') or ())


def read(target, keys):
    """The live target in canonical form; attributes/parameters only for the names in ``keys``."""
    tpg = _tpg(target)
    if tpg is None:
        return {'iqn': target.wwn, 'enabled': None, 'portals': [], 'luns': [], 'initiators': [], 'attributes': {},
                'parameters': {}}
    initiators = []
    acl_keys = sorted(_acl_keys(keys))
    for acl in tpg.node_acls:
        initiators.append({
            'iqn': acl.node_wwn,
            'chap': _cred(acl, 'chap_userid', 'chap_password'),
            'mutual_chap': _cred(acl, 'chap_mutual_userid', 'chap_mutual_password'),
            'mapped_luns': sorted((_mapping(m.mapped_lun, m.tpg_lun.lun, m.write_protect) for m in acl.mapped_luns),
                                  key=lambda x: x['mapped_lun']),
            'attributes': {k: acl.get_attribute(k) for k in acl_keys},
        })
    return {
        'iqn': target.wwn,
        'enabled': tpg.enable,
        'portals': sorted(({'ip': p.ip_address.strip('[]'), 'port': p.port} for p in tpg.network_portals),
                          key=lambda p: (p['ip'], p['port'])),
        'luns': sorted(({'lun': lun.lun, 'vdisk': lun.storage_object.name if lun.storage_object.plugin in lio_backstore.PLUGINS
                         else '%s/%s' % (lun.storage_object.plugin, lun.storage_object.name)}
                        for lun in tpg.luns), key=lambda x: x['lun']),
        'initiators': sorted(initiators, key=lambda i: i['iqn']),
        'attributes': {k: tpg.get_attribute(k) for k in sorted(keys['attributes'])},
        'parameters': {k: tpg.get_parameter(k) for k in sorted(keys['parameters'])},
    }


def masked(state, reference=None):
    """``state`` with CHAP secrets hidden; a secret that differs from ``reference``'s is marked changed."""
    if state is None:
        return None
    ref = {i['iqn']: i for i in (reference or {}).get('initiators', [])}
    out = dict(state, initiators=[])
    for init in state['initiators']:
        shown = dict(init)
        for key in ('chap', 'mutual_chap'):
            cred = init[key]
            if cred:
                old = (ref.get(init['iqn']) or {}).get(key)
                changed = reference is not None and (not old or old['password'] != cred['password'])
                shown[key] = {'userid': cred['userid'], 'password': HIDDEN + (' (changed)' if changed else '')}
        out['initiators'].append(shown)
    return out


def check_vdisks(desired, check_mode=False):
    """Every LUN must name an existing vDisk backstore; returns (missing vDisk names, warnings).

    In check mode a missing one is only a warning: a clusterducks.vdisk.vdisk
    task earlier in the play would have created it, but did not in check mode.
    """
    missing, warnings = set(), []
    for lun in desired['luns']:
        if lio_backstore.lookup(lun['vdisk']) is None:
            what = 'target %s LUN %d: unknown vDisk %s' % (desired['iqn'], lun['lun'], lun['vdisk'])
            if not check_mode:
                raise ValidationError(what + ' (create it with clusterducks.vdisk.vdisk first)')
            missing.add(lun['vdisk'])
            warnings.append(what + ' (not created yet: fine in check mode if a clusterducks.vdisk.vdisk task '
                                   'before this one creates it, an error in a real run)')
    return missing, warnings


def converge(desired, current, dry_run, missing=()):
    """Bring the live target from ``current`` (None: absent) to ``desired``.

    Returns the list of actions (descriptions without secrets). With
    ``dry_run`` nothing is changed; ``missing`` names vDisks that check mode
    found not created yet. Additions and changes come before removals,
    so a failure part-way leaves nothing declared missing.
    """
    actions = []
    rtslib = lio.rtslib
    iqn = desired['iqn']

    def act(text, fn=None):
        actions.append(text)
        if not dry_run and fn is not None:
            return fn()
        return None

    target = tpg = None
    if current is None:
        with_tpg = desired['enabled'] is not None
        target, tpg = act('create target %s' % iqn, lambda: _create_target(iqn, with_tpg)) or (None, None)
        # The kernel creates a TPG disabled.
        current = {'enabled': False if with_tpg else None, 'portals': [], 'luns': [], 'initiators': [],
                   'attributes': {}, 'parameters': {}}
    elif not dry_run:
        target = lookup(iqn)
        tpg = _tpg(target)
    if desired['enabled'] is None:
        # Only restore() asks for this: the target had no TPG 1 before a failed change.
        if current['enabled'] is not None:
            def remove_tpg():  # tpg is None in a dry run: look it up only when called
                tpg.delete()
            act('remove TPG %d' % TPG_TAG, remove_tpg)
        return actions
    if current['enabled'] is None:
        tpg = act('create TPG %d' % TPG_TAG, lambda: rtslib.TPG(target, TPG_TAG, mode='create'))
        current = dict(current, enabled=False)

    # Portals.
    for portal in desired['portals']:
        if portal not in current['portals']:
            act('add portal %s:%d' % (portal['ip'], portal['port']),
                lambda p=portal: rtslib.NetworkPortal(tpg, _np_address(p['ip']), p['port'], mode='create'))

    # LUNs: a LUN id pointing at another vDisk is replaced.
    live_luns = {x['lun']: x['vdisk'] for x in current['luns']}
    for lun in desired['luns']:
        have = live_luns.get(lun['lun'])
        if have == lun['vdisk']:
            continue
        if have is not None:
            act('remove LUN %d (%s) to replace it' % (lun['lun'], have),
                lambda n=lun['lun']: rtslib.LUN(tpg, n).delete())
        note = ' (not created yet)' if lun['vdisk'] in missing else ''
        act('add LUN %d: vDisk %s%s' % (lun['lun'], lun['vdisk'], note),
            lambda x=lun: rtslib.LUN(tpg, x['lun'], _backstore(x['vdisk'])))

    # Initiators: ACL, CHAP, mutual CHAP, mapped LUNs.
    live_acls = {i['iqn']: i for i in current['initiators']}
    replaced = {x['lun'] for x in desired['luns'] if live_luns.get(x['lun']) not in (None, x['vdisk'])}
    for init in desired['initiators']:
        node = init['iqn']
        have = live_acls.get(node)
        if have is None:
            act('add initiator %s' % node, lambda n=node: rtslib.NodeACL(tpg, n, mode='create'))
            have = {'chap': None, 'mutual_chap': None, 'mapped_luns': [], 'attributes': {}}

        def acl(n=node):
            return rtslib.NodeACL(tpg, n, mode='lookup')

        for key, user_attr, pass_attr in (('chap', 'chap_userid', 'chap_password'),
                                          ('mutual_chap', 'chap_mutual_userid', 'chap_mutual_password')):
            want, got = init[key], have[key]
            if want == got:
                continue
            label = 'mutual CHAP' if key == 'mutual_chap' else 'CHAP'
            act(('set %s for %s' if want else 'remove %s for %s') % (label, node),
                lambda w=want, u=user_attr, p=pass_attr: _set_cred(acl(), u, p, w))
        # Mapped LUN by mapped LUN: each must point at its TPG LUN with its own write-protect.
        # Mappings removed with a replaced LUN come back here.
        live_mapped = {x['mapped_lun']: x for x in have['mapped_luns'] if x['tpg_lun'] not in replaced}
        for want in init['mapped_luns']:
            m, t, wp = want['mapped_lun'], want['tpg_lun'], want['write_protect']
            got = live_mapped.get(m)
            ro = ' (read-only)' if wp else ''
            if got is None:
                act('map LUN %d for %s%s%s' % (m, node, '' if t == m else ' (TPG LUN %d)' % t, ro),
                    lambda m=m, t=t, wp=wp: rtslib.MappedLUN(acl(), m, t, wp))
            elif got['tpg_lun'] != t:
                # LIO cannot repoint a mapped LUN: the wrong one goes before the right one is made.
                act('remap LUN %d for %s (was TPG LUN %d)%s' % (m, node, got['tpg_lun'], ro),
                    lambda m=m, t=t, wp=wp: _remap(acl(), m, t, wp))
            elif got['write_protect'] != wp:
                act('set LUN %d %s for %s' % (m, 'read-only' if wp else 'read-write', node),
                    lambda m=m, wp=wp: setattr(rtslib.MappedLUN(acl(), m), 'write_protect', wp))
        for m in sorted(set(live_mapped) - set(x['mapped_lun'] for x in init['mapped_luns'])):
            act('unmap LUN %d for %s' % (m, node), lambda m=m: rtslib.MappedLUN(acl(), m).delete())
        # The declared ACL attributes; the others keep their values.
        for name, value in sorted(init.get('attributes', {}).items()):
            if have.get('attributes', {}).get(name) != value:
                act('set attribute %s=%s for %s' % (name, value, node),
                    lambda n=name, v=value: acl().set_attribute(n, v))

    # Attributes and parameters: only the declared (and defaulted) ones.
    for name, value in sorted(desired['attributes'].items()):
        if current['attributes'].get(name) != value:
            act('set attribute %s=%s' % (name, value), lambda n=name, v=value: tpg.set_attribute(n, v))
    for name, value in sorted(desired['parameters'].items()):
        if current['parameters'].get(name) != value:
            act('set parameter %s=%s' % (name, value), lambda n=name, v=value: tpg.set_parameter(n, v))

    # Removals last.
    for node in sorted(set(live_acls) - set(i['iqn'] for i in desired['initiators'])):
        act('remove initiator %s' % node, lambda n=node: rtslib.NodeACL(tpg, n, mode='lookup').delete())
    wanted_luns = set(x['lun'] for x in desired['luns'])
    for n in sorted(set(live_luns) - wanted_luns):
        act('remove LUN %d (%s)' % (n, live_luns[n]), lambda n=n: rtslib.LUN(tpg, n).delete())
    for portal in current['portals']:
        if portal not in desired['portals']:
            act('remove portal %s:%d' % (portal['ip'], portal['port']),
                lambda p=portal: rtslib.NetworkPortal(tpg, _np_address(p['ip']), p['port'], mode='lookup').delete())

    # Last, so that initiators log in only to a target that is complete.
    if desired['enabled'] != current['enabled']:
        act('%s TPG %d' % ('enable' if desired['enabled'] else 'disable', TPG_TAG),
            lambda: setattr(tpg, 'enable', desired['enabled']))
    return actions


def _create_target(iqn, with_tpg):
    target = lio.rtslib.Target(lio.rtslib.FabricModule('iscsi'), iqn, mode='create')
    return target, lio.rtslib.TPG(target, TPG_TAG, mode='create') if with_tpg else None


def _backstore(vdisk):
    """The storage object of a LUN entry: a vDisk, or "plugin/name" as read() gives other backstores.

    Only putting a target back after a failure asks for another backstore;
    that is rare enough to walk the storage objects for it.
    """
    if '/' not in vdisk:
        so = lio_backstore.lookup(vdisk)
    else:
        plugin, name = vdisk.split('/', 1)
        so = next((x for x in lio.rtslib.RTSRoot().storage_objects if (x.plugin, x.name) == (plugin, name)), None)
    if so is None:
        raise lio.LIOError('cannot export %s: there is no such backstore' % vdisk)
    return so


def _np_address(ip):
    """LIO names a portal "ip:port"; an IPv6 address goes in brackets (rtslib's NetworkPortal asks for them)."""
    return '[%s]' % ip if ':' in ip else ip


def _remap(acl, mapped_lun, tpg_lun, write_protect):
    lio.rtslib.MappedLUN(acl, mapped_lun).delete()
    lio.rtslib.MappedLUN(acl, mapped_lun, tpg_lun, write_protect)


def _set_cred(acl, user_attr, pass_attr, cred):
    setattr(acl, user_attr, cred['userid'] if cred else '')
    setattr(acl, pass_attr, cred['password'] if cred else '')


def logged_in(target):
    """The initiators with a session on ``target`` (configfs acls/*/info)."""
    names = []
    for tpg in target.tpgs:
        for acl in tpg.node_acls:
            if lio.logged_in(acl):
                names.append(acl.node_wwn)
    return sorted(names)


def delete(iqn, dry_run):
    """Remove a target with its TPGs, LUNs and ACLs (the vDisks stay)."""
    if not dry_run:
        lookup(iqn).delete()
    return ['delete target %s' % iqn]


def all_keys(target):
    """Every known attribute and parameter name of the target's TPG and ACLs, to put a deleted target back."""
    tpg = _tpg(target)
    if tpg is None:
        return {'attributes': (), 'parameters': (), 'initiator_attributes': ()}
    acls = list(tpg.node_acls)
    return {'attributes': TPG_ATTRIBUTES.intersection(tpg.list_attributes()),
            'parameters': TPG_PARAMETERS.intersection(tpg.list_parameters()),
            'initiator_attributes': ACL_ATTRIBUTES.intersection(acls[0].list_attributes()) if acls else ()}


def restore(iqn, before):
    """Put the target back as ``before`` (None: absent), after a change that failed or is undone.

    ``before`` is what read() returned ahead of the change; a change applied
    in part is just another live state to converge from.
    """
    target = lookup(iqn)
    if before is None:
        if target is not None:
            target.delete()
        return
    converge(before, None if target is None else read(target, before), dry_run=False)


def plan(specs, check_mode):
    """Read and plan every target of ``specs`` ([(state, desired)]) before anything changes.

    Returns (results, steps, warnings): per target its iqn, state, actions and
    before/after (secrets masked; attributes and parameters only the declared
    ones), and for the targets that change the (label, do, undo) steps for
    lio.apply_changes().
    """
    planned, warnings = [], []
    for state, desired in specs:
        target = lookup(desired['iqn'])
        missing = set()
        if state == 'absent':
            current = None if target is None else read(target, all_keys(target))
        else:
            current = None if target is None else read(target, desired)
            missing, more = check_vdisks(desired, check_mode)
            warnings.extend(more)
        planned.append((state, desired, current, missing))

    results, steps = [], []
    for state, desired, current, missing in planned:
        iqn = desired['iqn']
        if state == 'absent':
            actions = [] if current is None else delete(iqn, dry_run=True)
            before = None if current is None else dict(current, attributes={}, parameters={})
            after = None
            do = functools.partial(delete, iqn, False)
        else:
            actions = converge(desired, current, dry_run=True, missing=missing)
            before, after = current, desired
            do = functools.partial(converge, desired, current, False)
        if actions:
            steps.append(('target %s' % iqn, do, functools.partial(restore, iqn, current)))
        results.append({'iqn': iqn, 'state': state, 'actions': actions,
                        'before': masked(before), 'after': masked(after, before or {})})
    return results, steps, warnings


# Discovery authentication is one setting of the iSCSI fabric, for all targets.

def read_discovery(fabric):
    return {
        'enabled': bool(fabric.discovery_enable_auth),
        'chap': _cred(fabric, 'discovery_userid', 'discovery_password'),
        'mutual_chap': _cred(fabric, 'discovery_mutual_userid', 'discovery_mutual_password'),
    }


def normalize_discovery(spec):
    chap = _chap(spec, 'chap', 'discovery_auth')
    mutual = _chap(spec, 'mutual_chap', 'discovery_auth')
    enabled = bool(spec.get('enabled', True))
    if enabled and not chap:
        raise ValidationError('discovery_auth: enabled needs chap credentials')
    if mutual and not chap:
        raise ValidationError('discovery_auth: mutual_chap needs chap too')
    return {'enabled': enabled, 'chap': chap, 'mutual_chap': mutual}


def plan_discovery(desired):
    """(actions, before, after, steps) for discovery authentication; before/after without credentials."""
    fabric = lio.rtslib.FabricModule('iscsi')
    current = read_discovery(fabric)
    actions = converge_discovery(fabric, desired, current, dry_run=True)
    steps = []
    if actions:
        steps.append(('discovery authentication',
                      functools.partial(converge_discovery, fabric, desired, current, False),
                      lambda: converge_discovery(fabric, current, read_discovery(fabric), False)))
    before = {'enabled': current['enabled']}
    after = {'enabled': desired['enabled'], 'credentials': HIDDEN}
    return actions, before, after, steps


def converge_discovery(fabric, desired, current, dry_run):
    if desired == current:
        return []
    if not dry_run:
        fabric.discovery_enable_auth = False  # never enforce half-set credentials
        _set_cred(fabric, 'discovery_userid', 'discovery_password', desired['chap'])
        _set_cred(fabric, 'discovery_mutual_userid', 'discovery_mutual_password', desired['mutual_chap'])
        fabric.discovery_enable_auth = desired['enabled']
    return ['set discovery authentication (%s)' % ('on' if desired['enabled'] else 'off')]
