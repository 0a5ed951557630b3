#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: storage_api_info
short_description: Read assignments, device token metadata and vDisks from the storage API
version_added: 0.1.0
description:
  - Reads back what the storage API knows, so playbooks can check or report state.
  - Never returns secrets. Tokens are listed by id, device, name and creation time only (the API keeps only
    their hashes), and CHAP credentials are not part of any answer of the management API.
author:
  - clusterducks maintainers (!UNKNOWN)
extends_documentation_fragment:
  - clusterducks.vdisk.attributes
  - clusterducks.vdisk.attributes.info_module
  - clusterducks.vdisk.api
  - clusterducks.vdisk.attributes.actiongroup_api
  - clusterducks.vdisk.attributes.idempotent
  - clusterducks.vdisk.attributes.idempotent_not_modify_state
attributes:
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
options:
  gather_subset:
    description:
      - What to read. V(all) reads everything.
      - An entry with C(!) in front leaves that subset out, for example V(!vdisks). When the list holds only such
        entries, they are taken out of V(all).
      - O(gather) is a deprecated alias, which will be removed in 2.0.0.
    type: list
    elements: str
    choices: [all, assignments, tokens, vdisks, '!assignments', '!tokens', '!vdisks']
    default: [all]
    aliases: [gather]
    version_added: 0.2.0
  device:
    description: Only report the assignment and tokens of this device.
    type: str
seealso:
  - module: clusterducks.vdisk.assignment
  - module: clusterducks.vdisk.device_token
"""

EXAMPLES = r"""
- name: Read everything
  clusterducks.vdisk.storage_api_info:
    url: https://storage1.example.com:8443
    token: "{{ vdisk_api_admin_token }}"
    ca_path: /etc/clusterducks/vdisk-api-ca.crt
  register: api
  delegate_to: localhost

- name: Everything but the vDisks (the pool can be large)
  clusterducks.vdisk.storage_api_info:
    url: https://storage1.example.com:8443
    token: "{{ vdisk_api_admin_token }}"
    gather_subset: ['!vdisks']
  register: api_records
  delegate_to: localhost

- name: List unassigned vDisks
  ansible.builtin.debug:
    msg: "{{ api.vdisks | selectattr('assigned_to', 'none') | map(attribute='name') | list }}"

- name: Check that node01 has a token
  clusterducks.vdisk.storage_api_info:
    url: https://storage1.example.com:8443
    token: "{{ vdisk_api_admin_token }}"
    gather_subset: [tokens]
    device: node01
  register: node01
  failed_when: node01.tokens | length == 0
  delegate_to: localhost
"""

RETURN = r"""
assignments:
  description: Assignments, sorted by device (see RV(clusterducks.vdisk.assignment#module:assignment)).
  returned: V(assignments) is gathered (see O(gather_subset))
  type: list
  elements: dict
  sample:
    - device: node01
      vdisk: node01
      target: iqn.2003-01.org.linux-iscsi.storage1:vdisk-node01
      initiator_iqn: iqn.2024-01.org.clusterducks.device:node01
      overlayfs: {enabled: true, lower: /, upper: /data/overlayfs, work: /data/workdir}
      mounts: {"0": data}
      frozen: true
      revision: 1
      created_at: '2025-01-31T12:00:00Z'
      updated_at: '2025-01-31T12:00:00Z'
tokens:
  description:
    - Device token metadata (never the tokens), sorted by device and name.
    - C(replaced_by) is the id of the token that replaced this one in a rotation not finished yet
      (this one is still valid), V(null) for the current token of its name.
  returned: V(tokens) is gathered (see O(gather_subset))
  type: list
  elements: dict
  sample:
    - id: 4b2ac8ad828b6f86
      device: node01
      name: default
      created_at: '2025-01-31T12:00:00Z'
      replaced_by: null
vdisks:
  description:
    - vDisks of the storage host's pool with their LIO exports (target, TPG, LUN, initiators with an ACL)
      and the device they are assigned to (V(null) if none).
    - C(write_through) is V(true) for a vDisk exported write-through (M(clusterducks.vdisk.vdisk)'s O(clusterducks.vdisk.vdisk#module:write_through)).
  returned: V(vdisks) is gathered (see O(gather_subset))
  type: list
  elements: dict
  sample:
    - name: node01
      wwn: 0c7bdb5e-1d27-4e1c-9c0a-8e5d2f5b1a11
      size_bytes: 10737418240
      filesystem: xfs
      partitions: []
      write_through: false
      storage_object: {plugin: fileio, dev: /srv/vdisks/node01/disk.img}
      exports:
        - target: iqn.2003-01.org.linux-iscsi.storage1:vdisk-node01
          tpg: 1
          lun: 0
          enabled: true
          initiators: [iqn.2024-01.org.clusterducks.device:node01]
      assigned_to: node01
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.clusterducks.vdisk.plugins.module_utils import api_client
from ansible_collections.clusterducks.vdisk.plugins.module_utils import rules


SUBSETS = ('assignments', 'tokens', 'vdisks')


def subsets(requested):
    """The subsets to read: the positive entries (or all, if there are none), minus the negated ones."""
    positive = [item for item in requested if not item.startswith('!')]
    negated = set(item[1:] for item in requested if item.startswith('!'))
    wanted = set(SUBSETS) if 'all' in positive or not positive else set(positive)
    return wanted - negated


def argument_spec():
    spec = api_client.api_argument_spec()
    spec.update(
        gather_subset={'type': 'list', 'elements': 'str', 'default': ['all'],
                       'choices': ['all'] + list(SUBSETS) + ['!' + name for name in SUBSETS],
                       'aliases': ['gather'],
                       'deprecated_aliases': [{'name': 'gather', 'version': '2.0.0',
                                               'collection_name': 'clusterducks.vdisk'}]},
        device={'type': 'str'},
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    device = module.params['device']
    if device is not None:
        try:
            rules.check_device(device)
        except rules.RuleError as exc:
            module.fail_json(msg=str(exc))
    wanted = subsets(module.params['gather_subset'])
    client = api_client.client_from_module(module)
    result = {'changed': False}
    try:
        if 'assignments' in wanted:
            if device is None:
                result['assignments'] = client.list_assignments()
            else:
                found = client.get_assignment(device)
                result['assignments'] = [found] if found else []
        if 'tokens' in wanted:
            result['tokens'] = client.list_tokens(device)
        if 'vdisks' in wanted:
            result['vdisks'] = client.list_vdisks()
    except api_client.ApiError as exc:
        module.fail_json(msg=str(exc), status=exc.status, code=exc.code)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
