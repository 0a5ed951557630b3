#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: iscsi_target
short_description: Manage iSCSI targets on LIO declaratively - portals, LUNs, initiators, CHAP, TPG settings
version_added: 0.1.0
description:
  - Converges whole iSCSI targets on a Linux LIO storage host through rtslib-fb, without C(targetcli).
  - A target has one TPG (tag 1) with network portals, LUNs that export vDisks (see M(clusterducks.vdisk.vdisk)),
    initiator ACLs with CHAP and mutual CHAP credentials and the LUNs each initiator sees, and TPG attributes and
    parameters.
  - Whatever differs from the declaration is added, changed or removed - portals, LUNs, initiators and mapped LUNs
    that are not declared are removed. Declared attributes and parameters are set; undeclared ones are left as
    they are.
  - ACLs are always enforced (C(generate_node_acls=0)), so an initiator that is not declared cannot log in. When the
    initiators have CHAP credentials, C(authentication=1) is set so that a wrong secret is refused.
  - Many targets can be managed in one run with O(targets); the run makes one pass and saves LIO's configuration
    once. Runs against one host are serialized with a lock; every change is saved atomically (mode 0600) to LIO's
    save file, so targets come back by themselves when the storage host boots.
  - Every input is validated before anything is changed. If a change fails part-way, the failing target and every
    target the run changed before it are put back as they were, in reverse order, and the save file is left as it
    was, so LIO and its save file still agree. If putting a target back fails too, the running configuration is
    saved (the next boot brings back what is live) and the error message says which targets could not be put back.
  - The result always has each target's state before and after the run (RV(targets[].before),
    RV(targets[].after), CHAP secrets masked); diff mode adds a diff of the targets that change.
author:
  - clusterducks maintainers (!UNKNOWN)
extends_documentation_fragment:
  - clusterducks.vdisk.attributes
  - clusterducks.vdisk.attributes.platform
  - clusterducks.vdisk.attributes.idempotent
attributes:
  idempotent:
    support: full
  check_mode:
    support: full
    details:
      - "A LUN whose vDisk does not exist yet is planned as C(add LUN N: vDisk X (not created yet)) with a warning,
        so that check mode runs through a play whose M(clusterducks.vdisk.vdisk) task would create it. Without check
        mode that is an error, raised before anything is changed."
  diff_mode:
    support: full
options:
  iqn:
    description:
      - IQN of one target (RFC 3720, for example V(iqn.2026-11.io.clusterducks:node01)). Mutually exclusive with
        O(targets).
    type: str
  portals: &portals
    description: Network portals the target listens on. Defaults to all addresses, port 3260.
    type: list
    elements: dict
    suboptions:
      ip:
        description: An IPv4 or IPv6 address of the storage host, or V(0.0.0.0) for all.
        type: str
        required: true
      port:
        description: TCP port.
        type: int
        default: 3260
  luns: &luns
    description: LUNs of the target, each exporting one vDisk.
    type: list
    elements: dict
    suboptions:
      lun:
        description: LUN id, 0 to 255, unique in the target.
        type: int
        required: true
      vdisk:
        description: Name of the vDisk (its LIO backstore) to export.
        type: str
        required: true
  initiators: &initiators
    description:
      - The initiators allowed to log in (node ACLs).
      - Give either every initiator of a target CHAP credentials, or none (LIO enforces authentication per target).
    type: list
    elements: dict
    suboptions:
      iqn:
        description: The initiator's IQN.
        type: str
        required: true
      chap:
        description:
          - CHAP credentials the initiator must present. The secret is 12 to 255 visible ASCII characters without
            spaces, quotes or backslashes (RFC 7143 asks for at least 12; Windows' initiator takes at most 16).
        type: dict
        suboptions:
          userid:
            description: CHAP user name.
            type: str
            required: true
          password:
            description: CHAP secret.
            type: str
            required: true
      mutual_chap:
        description:
          - Credentials the target presents to the initiator (mutual CHAP). Needs O(initiators[].chap); the secret
            must differ from it.
        type: dict
        suboptions:
          userid:
            description: Mutual CHAP user name.
            type: str
            required: true
          password:
            description: Mutual CHAP secret.
            type: str
            required: true
      luns:
        description:
          - The target's LUN ids this initiator sees, under the same numbers. Defaults to all of them.
        type: list
        elements: int
      write_protect:
        description: Map the LUNs read-only for this initiator.
        type: bool
        default: false
      attributes:
        description:
          - Node ACL attributes, the target's timeouts for this initiator (for example V(dataout_timeout),
            V(nopin_timeout), V(nopin_response_timeout)). Unknown names are refused; undeclared ones keep their
            values.
          - With LIO's default error recovery level 0, a write whose data does not arrive within
            C(dataout_timeout) (3 s by default) closes the connection; a device whose root lives on the vDisk then
            depends on iscsid to log in again. Devices on a busy or lossy storage network may want more.
        type: dict
  attributes: &attributes
    description:
      - TPG attributes (for example V(login_timeout), V(default_cmdsn_depth)). Unknown names are refused.
      - C(generate_node_acls=0), C(cache_dynamic_acls=0) and C(demo_mode_write_protect=1) are set unless
        declared; C(authentication) follows whether the initiators use CHAP.
    type: dict
  parameters: &parameters
    description: TPG (RFC 3720) parameters, for example V(HeaderDigest), V(MaxRecvDataSegmentLength).
    type: dict
  state:
    description:
      - V(present) converges the target; V(absent) deletes it (never its vDisks).
      - With O(targets), the default for items that do not set their own.
    type: str
    choices: [present, absent]
    default: present
  targets:
    description:
      - Many targets in one run (one pass over LIO, one save).
      - Each listed target is replaced by its item - portals, LUNs, initiators, CHAP and mapped LUNs become exactly
        the declaration; its O(targets[].attributes) and O(targets[].parameters) are merged (only the declared
        names are set). Targets the list does not name are left alone unless O(purge=true). See the table in
        C(docs/storage-host.md).
      - Mutually exclusive with O(iqn), O(portals), O(luns), O(initiators), O(attributes) and O(parameters)
        (top-level values would be silently ignored).
    type: list
    elements: dict
    suboptions:
      iqn:
        description: IQN of the target.
        type: str
        required: true
      portals: *portals
      luns: *luns
      initiators: *initiators
      attributes: *attributes
      parameters: *parameters
      state:
        description: V(present) or V(absent); defaults to the module's O(state).
        type: str
        choices: [present, absent]
  purge:
    description:
      - Make O(targets) authoritative for the host's iSCSI targets - every iSCSI target the list does not name is
        deleted (with its LUNs, ACLs and mappings; never its vDisks).
      - A target that an initiator is logged in to is not deleted unless O(force=true), as the initiator would lose its
        disk. The run then fails before changing anything.
      - Only with O(targets).
    type: bool
    default: false
  force:
    description:
      - With O(purge=true), also delete unlisted targets that an initiator is logged in to.
    type: bool
    default: false
  discovery_auth:
    description:
      - CHAP for SendTargets discovery. This is one setting of the iSCSI fabric, shared by all targets of the host;
        it is only changed when given.
    type: dict
    suboptions:
      enabled:
        description: Require CHAP for discovery.
        type: bool
        default: true
      chap:
        description: Credentials initiators present for discovery.
        type: dict
        suboptions:
          userid:
            description: User name.
            type: str
            required: true
          password:
            description: Secret.
            type: str
            required: true
      mutual_chap:
        description: Credentials the target presents for discovery.
        type: dict
        suboptions:
          userid:
            description: User name.
            type: str
            required: true
          password:
            description: Secret.
            type: str
            required: true
requirements:
  - python3-rtslib-fb
seealso:
  - module: clusterducks.vdisk.vdisk
  - module: clusterducks.vdisk.lio_info
"""

EXAMPLES = r"""
- name: Export node01's vDisk to node01 only, with mutual CHAP
  clusterducks.vdisk.iscsi_target:
    iqn: iqn.2026-11.io.clusterducks:node01
    portals:
      - ip: 10.77.0.11
    luns:
      - lun: 0
        vdisk: node01
    initiators:
      - iqn: iqn.2026-11.io.clusterducks:device.node01
        chap:
          userid: node01
          password: "{{ vault_node01_chap }}"
        mutual_chap:
          userid: storage1
          password: "{{ vault_node01_mutual_chap }}"
        attributes:
          dataout_timeout: 10  # a slow storage network must not drop a diskless device's session
    attributes:
      login_timeout: 15

- name: These are all of the host's targets; delete any other (refused while an initiator is logged in to it)
  clusterducks.vdisk.iscsi_target:
    purge: true
    targets:
      - iqn: iqn.2026-11.io.clusterducks:node01
        luns: [{lun: 0, vdisk: node01}]
        initiators: [{iqn: iqn.2026-11.io.clusterducks.device:node01}]

- name: Many targets in one run (one pass, one save)
  clusterducks.vdisk.iscsi_target:
    targets: "{{ storage_targets }}"

- name: Remove a target (its vDisks stay)
  clusterducks.vdisk.iscsi_target:
    iqn: iqn.2026-11.io.clusterducks:old
    state: absent
"""

RETURN = r"""
before:
  description:
    - Each target of the run by IQN as it was before (V(null) if it did not exist), secrets masked. Always returned,
      not only in diff mode. With O(discovery_auth), also C(discovery_auth).
  returned: success
  type: dict
  sample:
    iqn.2026-11.io.clusterducks:node01:
      iqn: iqn.2026-11.io.clusterducks:node01
      enabled: true
      portals: [{ip: 10.77.0.11, port: 3260}]
      luns: [{lun: 0, vdisk: node01}]
      initiators:
        - iqn: iqn.2026-11.io.clusterducks.device:node01
          chap: {userid: node01, password: '********'}
          mutual_chap: null
          mapped_luns: [{mapped_lun: 0, tpg_lun: 0, write_protect: false}]
      attributes: {authentication: '1'}
      parameters: {}
after:
  description:
    - Each target of the run by IQN as the run leaves it (or would, in check mode); V(null) when deleted. A CHAP
      secret that changes shows as V(******** (changed)).
  returned: success
  type: dict
  sample:
    iqn.2026-11.io.clusterducks:old: null
targets:
  description: Every target the run was given, in order.
  returned: success
  type: list
  elements: dict
  contains:
    iqn:
      description: The target's IQN.
      type: str
      returned: always
      sample: iqn.2026-11.io.clusterducks:node01
    state:
      description: V(present) or V(absent).
      type: str
      returned: always
      sample: present
    actions:
      description: What was changed, or would be in check mode. Never contains secrets.
      type: list
      elements: str
      returned: always
      sample: [create target iqn.2026-11.io.clusterducks:node01, 'add portal 10.77.0.11:3260', 'add LUN 0: vDisk node01',
               add initiator iqn.2026-11.io.clusterducks:device.node01, set CHAP for iqn.2026-11.io.clusterducks:device.node01,
               'map LUN 0 for iqn.2026-11.io.clusterducks:device.node01']
    before:
      description:
        - The target as it was before the run; V(null) if it did not exist.
        - Attributes and parameters are only the declared ones (and the defaulted C(generate_node_acls),
          C(cache_dynamic_acls), C(demo_mode_write_protect) and C(authentication)); none for O(state=absent).
        - CHAP secrets are shown as C(********). Same keys as RV(targets[].after).
      type: dict
      returned: always
      sample:
        iqn: iqn.2026-11.io.clusterducks:node01
        enabled: true
        portals: [{ip: 10.77.0.11, port: 3260}]
        luns: [{lun: 0, vdisk: node01}]
        initiators:
          - iqn: iqn.2026-11.io.clusterducks:device.node01
            chap: {userid: node01, password: '********'}
            mutual_chap: null
            mapped_luns: [{mapped_lun: 0, tpg_lun: 1, write_protect: true}]
        attributes: {authentication: '1', cache_dynamic_acls: '0', demo_mode_write_protect: '1', generate_node_acls: '0'}
        parameters: {}
    after:
      description:
        - The target as declared, which it is after the run (or would be, outside check mode); V(null) for
          O(state=absent).
        - CHAP secrets are shown as C(********); one the run sets is marked C(changed) after the stars.
      type: dict
      returned: always
      contains:
        iqn:
          description: The target's IQN.
          type: str
        enabled:
          description: Whether TPG 1 is enabled; V(null) in RV(targets[].before) when the target has no TPG 1.
          type: bool
        portals:
          description: Network portals, sorted.
          type: list
          elements: dict
        luns:
          description: LUN ids and the vDisk each exports (C(plugin/name) for a backstore that is not a vDisk).
          type: list
          elements: dict
        initiators:
          description:
            - Initiator ACLs with C(iqn), C(chap) and C(mutual_chap) (V(null) when not set), C(mapped_luns) and
              C(attributes) (the declared ACL attributes, as strings).
            - C(mapped_luns) has one entry per LUN the initiator sees, as LIO keeps it - C(mapped_lun) (the number
              the initiator sees), C(tpg_lun) (the target's LUN id) and C(write_protect). A declared initiator maps
              each of its O(initiators[].luns) under its own number with its O(initiators[].write_protect).
          type: list
          elements: dict
        attributes:
          description: TPG attributes as strings (see RV(targets[].before) for which).
          type: dict
        parameters:
          description: TPG parameters as strings, the declared ones.
          type: dict
      sample:
        iqn: iqn.2026-11.io.clusterducks:node01
        enabled: true
        portals: [{ip: 10.77.0.11, port: 3260}]
        luns: [{lun: 0, vdisk: node01}]
        initiators:
          - iqn: iqn.2026-11.io.clusterducks:device.node01
            chap: {userid: node01, password: '******** (changed)'}
            mutual_chap: null
            mapped_luns: [{mapped_lun: 0, tpg_lun: 0, write_protect: false}]
            attributes: {dataout_timeout: '10'}
        attributes: {authentication: '1', cache_dynamic_acls: '0', demo_mode_write_protect: '1', generate_node_acls: '0'}
        parameters: {}
discovery_actions:
  description: What was changed in discovery authentication.
  returned: success
  type: list
  elements: str
  sample: ['set discovery authentication (on)']
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio, lio_target, resource_run
from ansible_collections.clusterducks.vdisk.plugins.module_utils.locking import LockTimeout, host_lock
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import ValidationError, resource_items

CRED = {'type': 'dict', 'no_log': False, 'options': {
    'userid': {'type': 'str', 'required': True},
    'password': {'type': 'str', 'required': True, 'no_log': True},
}}
TARGET_KEYS = ('iqn', 'portals', 'luns', 'initiators', 'attributes', 'parameters', 'state')


def requested(params):
    raw = resource_items(params, 'iqn', 'targets', TARGET_KEYS)
    specs, seen = [], set()
    for n, item in enumerate(raw, 1):
        state = item.get('state') or params['state']
        if state not in ('present', 'absent'):
            raise ValidationError('targets item %d: state must be present or absent' % n)
        if state == 'absent':
            desired = {'iqn': lio_target.check_iqn(item.get('iqn'), 'target IQN')}
        else:
            desired = lio_target.normalize(item)
        if desired['iqn'] in seen:
            raise ValidationError('target %s is listed twice' % desired['iqn'])
        seen.add(desired['iqn'])
        specs.append((state, desired))
    return specs


def purged(root, specs, force):
    """With purge: (state 'absent', target) for every iSCSI target the list does not name.

    Deleting a target cuts its initiators off their disks: a target with a
    logged-in initiator is refused unless ``force``.
    """
    listed = set(desired['iqn'] for _state, desired in specs)
    extra = []
    for target in sorted(lio.iscsi_targets(root), key=lambda t: t.wwn):
        if target.wwn in listed:
            continue
        sessions = lio_target.logged_in(target)
        if sessions and not force:
            raise ValidationError('target %s is not in the list, but %s logged in to it: set force=true to delete '
                                  'it anyway (the initiator loses its disk)' % (target.wwn, ', '.join(sessions)))
        extra.append(('absent', {'iqn': target.wwn}))
    return extra


def run_module():
    cred = dict(CRED)
    target_options = {
        'portals': {'type': 'list', 'elements': 'dict', 'options': {
            'ip': {'type': 'str', 'required': True}, 'port': {'type': 'int', 'default': 3260}}},
        'luns': {'type': 'list', 'elements': 'dict', 'options': {
            'lun': {'type': 'int', 'required': True}, 'vdisk': {'type': 'str', 'required': True}}},
        'initiators': {'type': 'list', 'elements': 'dict', 'options': {
            'iqn': {'type': 'str', 'required': True},
            'chap': cred, 'mutual_chap': cred,
            'luns': {'type': 'list', 'elements': 'int'},
            'write_protect': {'type': 'bool', 'default': False},
            'attributes': {'type': 'dict'}}},
        'attributes': {'type': 'dict'},
        'parameters': {'type': 'dict'},
    }
    item_options = dict(target_options, iqn={'type': 'str', 'required': True},
                        state={'type': 'str', 'choices': ['present', 'absent']})
    module = AnsibleModule(
        argument_spec=dict(
            target_options,
            iqn={'type': 'str'},
            state={'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
            targets={'type': 'list', 'elements': 'dict', 'options': item_options},
            purge={'type': 'bool', 'default': False},
            force={'type': 'bool', 'default': False},
            discovery_auth={'type': 'dict', 'options': {
                'enabled': {'type': 'bool', 'default': True}, 'chap': cred, 'mutual_chap': cred}},
        ),
        # With targets, top-level target keys would be silently ignored: refuse them.
        mutually_exclusive=[('iqn', 'targets'), ('targets', 'portals'), ('targets', 'luns'), ('targets', 'initiators'),
                            ('targets', 'attributes'), ('targets', 'parameters'), ('iqn', 'purge')],
        required_one_of=[('iqn', 'targets', 'discovery_auth')],
        supports_check_mode=True,
    )
    lio.require_rtslib(module)
    try:
        specs = requested(module.params) if (module.params['iqn'] or module.params['targets']) else []
        discovery = (lio_target.normalize_discovery(module.params['discovery_auth'])
                     if module.params['discovery_auth'] else None)
        root = lio.open_root()
        with host_lock():
            if module.params['purge']:
                if module.params['targets'] is None:
                    raise ValidationError('purge needs targets: it deletes the targets that list does not name')
                specs = specs + purged(root, specs, module.params['force'])
            result = converge(module, root, specs, discovery)
    except lio.ChangeFailed as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    except (ValidationError, lio.LIOError, LockTimeout) as exc:
        module.fail_json(msg=str(exc))
    except (lio.rtslib_errors()[0], OSError) as exc:
        module.fail_json(msg='reading LIO failed (nothing was changed): %s' % exc, exception=traceback.format_exc())
    module.exit_json(**result)


def converge(module, root, specs, discovery):
    # Read and check everything before the first change.
    results, steps, warnings = lio_target.plan(specs, module.check_mode)
    for warning in warnings:
        module.warn(warning)
    discovery_actions = []
    if discovery is not None:
        discovery_actions, discovery_before, discovery_after, discovery_steps = lio_target.plan_discovery(discovery)
        steps += discovery_steps
    if steps and not module.check_mode:
        # All or nothing across targets; LIO and its save file agree afterwards either way.
        lio.apply_changes(root, steps)
    result = resource_run.result([(r['iqn'], r['actions'], r['before'], r['after']) for r in results], module._diff)
    result.update(changed=bool(steps), targets=results, discovery_actions=discovery_actions)
    if discovery_actions:
        result['before']['discovery_auth'] = discovery_before
        result['after']['discovery_auth'] = discovery_after
        if module._diff:
            result['diff']['before']['discovery_auth'] = discovery_before
            result['diff']['after']['discovery_auth'] = discovery_after
    return result


def main():
    run_module()


if __name__ == '__main__':
    main()
