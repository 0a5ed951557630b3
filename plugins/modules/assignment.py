#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: assignment
short_description: Assign a vDisk to a device in the storage API
version_added: 0.1.0
description:
  - Declares which vDisk a device attaches at boot and how it mounts it. This is the seed's
    C(Assignment Properties) dialog (OverlayFS on/off, a partition number to mountpoint map, Lower / Upper / Work)
    as a declarative resource of the clusterducks storage API.
  - At boot the device's initramfs asks the API (with the device's own token) for its boot record, with the initiator IQN,
    target, portals, LUN, WWN, CHAP credentials, overlayfs settings, mounts and the frozen flag.
  - One assignment per device, and a vDisk belongs to at most one device.
  - The input is checked before anything is sent (the seed's rules, see O(mounts) and O(overlayfs)), then the API
    checks it again against the vDisk's partitions and the saved LIO configuration (the API is authoritative;
    for example the target must have an ACL for the initiator IQN, or the device could not log in).
    Nothing is changed when a check fails.
  - The API, its boot record and the boot record's shell form are described in C(docs/api.md) of the collection.
author:
  - clusterducks maintainers (!UNKNOWN)
extends_documentation_fragment:
  - clusterducks.vdisk.attributes
  - clusterducks.vdisk.api
  - clusterducks.vdisk.attributes.actiongroup_api
  - clusterducks.vdisk.attributes.idempotent
attributes:
  check_mode:
    support: full
    details:
      - In check mode the API validates the assignment (a dry run) without storing it.
  diff_mode:
    support: full
  idempotent:
    support: full
    details:
      - The module compares the declared fields with what the API stores (after the API's own normalization,
        from a dry run), so the second run reports no change and the API does not bump the revision.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
options:
  device:
    description:
      - Device id, as the device presents it at boot (usually its host name).
      - 1-63 characters C(a-z), C(0-9), C(.) and C(-), starting with a letter or digit.
    type: str
    required: true
  vdisk:
    description:
      - Name of the vDisk (the pool's vDisk and the LIO storage object of that name).
      - Required when O(state=present).
    type: str
  target:
    description:
      - IQN of the iSCSI target that exports the vDisk.
      - When omitted, the API picks the only target whose LUNs use the vDisk (and fails if there are several).
    type: str
  initiator_iqn:
    description:
      - iSCSI initiator IQN the device must use. The target needs an ACL for it.
      - A shared golden image cannot carry one IQN per device, so the device learns it at boot.
      - Defaults to C(<prefix>:<device>), with the API's configured prefix
        (C(iqn.2024-01.org.clusterducks.device) unless changed), for example
        C(iqn.2024-01.org.clusterducks.device:node01).
    type: str
  overlayfs:
    description:
      - OverlayFS root on the vDisk. When omitted, the overlay is disabled (as O(overlayfs.enabled) omitted).
      - With the overlay enabled, O(overlayfs.upper) and O(overlayfs.work) are required, must both lie below the
        same mounted vDisk path (one filesystem, as overlayfs requires), and neither may be inside the other.
    type: dict
    suboptions:
      enabled:
        description:
          - Whether the device builds an overlayfs root on the vDisk.
          - When not set, the storage API's default applies, V(false) (the overlay is disabled), the same whether
            the assignment comes from this module or straight from the API; the module sends that value. Set it to
            V(true) to build an overlayfs root, as in the seed's example.
          - Earlier versions of this module used V(true) when O(overlayfs) was given without O(overlayfs.enabled),
            unlike the API. It now warns when O(overlayfs.upper) or O(overlayfs.work) is set without it.
        type: bool
      lower:
        description: Lower (read-only) layer, an absolute path; the golden image root by default.
        type: str
        default: /
      upper:
        description: Upper (writable) directory, an absolute path on a mounted vDisk path, for example V(/data/overlayfs).
        type: str
      work:
        description: Overlayfs work directory on the same filesystem as O(overlayfs.upper), for example V(/data/workdir).
        type: str
  mounts:
    description:
      - Partitions of the vDisk to mount, as in the seed's key/value list.
      - Keys are partition numbers (the X in sdbX), or V(0) for a filesystem on the whole disk.
        Each must exist on the vDisk and carry a filesystem.
      - Values are paths without the leading C(/), as in the seed (V(data) mounts on C(/data)).
        No C(.) or C(..) components, no empty components, unique across partitions.
    type: dict
    default: {}
  frozen:
    description:
      - Whether the device stays frozen (locked), so that its OS layer is reprovisioned at every boot.
      - The seed recommends leaving all overlayfs devices frozen.
    type: bool
    default: true
  state:
    description: Whether the assignment exists.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: clusterducks.vdisk.device_token
  - module: clusterducks.vdisk.storage_api_info
"""

EXAMPLES = r"""
- name: Give node01 its vDisk, mounted on /data, with an overlayfs root (the seed's example)
  clusterducks.vdisk.assignment:
    url: https://storage1.example.com:8443
    token: "{{ vdisk_api_admin_token }}"
    ca_path: /etc/clusterducks/vdisk-api-ca.crt
    device: node01
    vdisk: node01
    mounts:
      "0": data
    overlayfs:
      enabled: true
      lower: /
      upper: /data/overlayfs
      work: /data/workdir
  delegate_to: localhost

- name: A partitioned vDisk, thawed (OS changes survive a reboot)
  clusterducks.vdisk.assignment:
    url: https://storage1.example.com:8443
    token: "{{ vdisk_api_admin_token }}"
    device: node02
    vdisk: node02
    target: iqn.2003-01.org.linux-iscsi.storage1:vdisk-node02
    initiator_iqn: iqn.2005-03.org.open-iscsi:node02
    mounts:
      "1": data
      "2": var/lib/puppet
    frozen: false
  delegate_to: localhost

- name: Set the connection options once for all storage API modules (action group clusterducks.vdisk.api)
  module_defaults:
    group/clusterducks.vdisk.api:
      url: https://storage1.example.com:8443
      token: "{{ vdisk_api_admin_token }}"
      ca_path: /etc/clusterducks/vdisk-api-ca.crt
  delegate_to: localhost
  block:
    - name: Assign node03's vDisk, without an overlay
      clusterducks.vdisk.assignment:
        device: node03
        vdisk: node03
        mounts:
          "0": data

    - name: And its boot token
      clusterducks.vdisk.device_token:
        device: node03
        dest: /etc/clusterducks/device-tokens/node03

- name: Remove an assignment
  clusterducks.vdisk.assignment:
    url: https://storage1.example.com:8443
    token: "{{ vdisk_api_admin_token }}"
    device: node03
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
assignment:
  description:
    - The assignment as the API stores it (in check mode, as it would be stored), V(null) when absent.
    - Holds no secrets (CHAP credentials live in the LIO configuration and are only sent to the device).
  returned: success
  type: dict
  contains:
    device:
      description: Device id.
      type: str
      sample: node01
    vdisk:
      description: vDisk name.
      type: str
      sample: node01
    target:
      description: Target IQN (resolved by the API when not given).
      type: str
      sample: iqn.2003-01.org.linux-iscsi.storage1:vdisk-node01
    initiator_iqn:
      description: Initiator IQN the device uses.
      type: str
      sample: iqn.2024-01.org.clusterducks.device:node01
    overlayfs:
      description: Overlayfs settings with keys C(enabled), C(lower), C(upper), C(work).
      type: dict
      sample: {enabled: true, lower: /, upper: /data/overlayfs, work: /data/workdir}
    mounts:
      description: Partition number (string) to path without the leading slash.
      type: dict
      sample: {"0": data}
    frozen:
      description: Whether the device is frozen.
      type: bool
      sample: true
    revision:
      description: Incremented by the API on every change; absent in check mode for a new assignment.
      type: int
      sample: 3
    created_at:
      description: When the assignment was created (UTC, ISO 8601); absent in check mode for a new assignment.
      type: str
      sample: '2025-01-31T12:00:00Z'
    updated_at:
      description: When the assignment last changed (UTC, ISO 8601); absent in check mode for a new assignment.
      type: str
      sample: '2025-01-31T12:00:00Z'
before:
  description:
    - The declared fields of the assignment before the run, V(null) if the device had none.
    - Returned in every mode; in diff mode the same data is also in C(diff). Holds no secrets.
  returned: success
  type: dict
  contains: &assignment_view
    device:
      description: Device id.
      type: str
      sample: node01
    vdisk:
      description: vDisk name.
      type: str
      sample: node01
    target:
      description: Target IQN.
      type: str
      sample: iqn.2003-01.org.linux-iscsi.storage1:vdisk-node01
    initiator_iqn:
      description: Initiator IQN the device uses.
      type: str
      sample: iqn.2024-01.org.clusterducks.device:node01
    overlayfs:
      description: Overlayfs settings with keys C(enabled), C(lower), C(upper), C(work).
      type: dict
      sample: {enabled: true, lower: /, upper: /data/overlayfs, work: /data/workdir}
    mounts:
      description: Partition number (string) to path without the leading slash.
      type: dict
      sample: {"0": data}
    frozen:
      description: Whether the device is frozen.
      type: bool
      sample: true
after:
  description:
    - The declared fields of the assignment after the run (in check mode, as the API would store them, from its
      dry run), V(null) after O(state=absent).
    - Returned in every mode; in diff mode the same data is also in C(diff). Holds no secrets.
  returned: success
  type: dict
  contains: *assignment_view
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.clusterducks.vdisk.plugins.module_utils import api_client
from ansible_collections.clusterducks.vdisk.plugins.module_utils import rules

# What an omitted overlayfs.enabled means: the shared rule's default, so that
# the module sends what the API would store for the same input.
OVERLAY_ENABLED_DEFAULT = rules.OVERLAY_ENABLED_DEFAULT

# The fields the user declares; the API adds revision and timestamps.
FIELDS = ('device', 'vdisk', 'target', 'initiator_iqn', 'overlayfs', 'mounts', 'frozen')


def _view(record):
    """The declared part of an assignment (what diff and idempotence compare)."""
    if record is None:
        return None
    return dict((key, record.get(key)) for key in FIELDS)


def _desired(params):
    body = {
        'device': params['device'],
        'vdisk': params['vdisk'],
        'frozen': params['frozen'],
        'mounts': params['mounts'] or {},
    }
    if params['target'] is not None:
        body['target'] = params['target']
    if params['initiator_iqn'] is not None:
        body['initiator_iqn'] = params['initiator_iqn']
    if params['overlayfs'] is not None:
        body['overlayfs'] = dict((k, v) for k, v in params['overlayfs'].items() if v is not None)
        body['overlayfs'].setdefault('enabled', OVERLAY_ENABLED_DEFAULT)
    return body


def argument_spec():
    spec = api_client.api_argument_spec()
    spec.update(
        device={'type': 'str', 'required': True},
        vdisk={'type': 'str'},
        target={'type': 'str'},
        initiator_iqn={'type': 'str'},
        overlayfs={'type': 'dict', 'options': {
            'enabled': {'type': 'bool'},  # no default here: see OVERLAY_ENABLED_DEFAULT
            'lower': {'type': 'str', 'default': '/'},
            'upper': {'type': 'str'},
            'work': {'type': 'str'},
        }},
        mounts={'type': 'dict', 'default': {}},
        frozen={'type': 'bool', 'default': True},
        state={'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[('state', 'present', ('vdisk',))])
    params = module.params

    overlay = params['overlayfs']
    if overlay and overlay['enabled'] is None and (overlay['upper'] or overlay['work']):
        module.warn('overlayfs.enabled is not set, so the overlay is %s (the storage API\'s default); set '
                    'overlayfs.enabled to true to build an overlayfs root (earlier versions of this module enabled '
                    'it when the option was omitted)' % ('enabled' if OVERLAY_ENABLED_DEFAULT else 'disabled'))

    # Validate everything we can before any request.
    try:
        rules.check_device(params['device'])
        desired = _desired(params)
        if params['state'] == 'present':
            rules.normalize_assignment(desired)
    except rules.RuleError as exc:
        module.fail_json(msg=str(exc), field=exc.field)

    client = api_client.client_from_module(module)
    try:
        current = client.get_assignment(params['device'])
        if params['state'] == 'absent':
            changed = current is not None
            if changed and not module.check_mode:
                client.delete_assignment(params['device'])
            result = {'changed': changed, 'assignment': None, 'before': _view(current), 'after': None}
            if module._diff:
                result['diff'] = {'before': result['before'] or {}, 'after': {}}
            module.exit_json(**result)

        vdisk = client.get_vdisk(params['vdisk'])
        if vdisk is None:
            module.fail_json(msg='unknown vDisk %s: the storage API does not know it' % params['vdisk'],
                             field='vdisk')
        try:
            rules.check_partitions(rules.normalize_mounts(desired['mounts']), vdisk)
        except rules.RuleError as exc:
            module.fail_json(msg=str(exc), field=exc.field)

        # The API normalizes (defaults, resolved target) and runs the
        # authoritative checks without storing anything.
        planned = client.put_assignment(params['device'], desired, dry_run=True)
        changed = _view(current) != _view(planned)
        stored = current
        if changed:
            stored = planned if module.check_mode else client.put_assignment(params['device'], desired)
    except api_client.ApiError as exc:
        module.fail_json(msg=str(exc), status=exc.status, code=exc.code)

    result = {'changed': changed, 'assignment': stored, 'before': _view(current), 'after': _view(stored)}
    if module._diff:
        result['diff'] = {'before': result['before'] or {}, 'after': result['after']}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
