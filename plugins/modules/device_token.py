#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: device_token
short_description: Issue or revoke a device's boot token in the storage API
version_added: 0.1.0
description:
  - A device token lets exactly one device read exactly one thing, its own boot record
    (C(GET /api/v1/boot/<device>)). It cannot read another device's record or use the management API.
  - The API stores only a SHA-256 hash of the token, so the token is known once, when it is created.
    Save it then (O(dest)); it cannot be read back later. Create a new one (O(regenerate=true)) if it is lost.
  - A device may hold several tokens with different O(name)s, which allows rotation without downtime.
author:
  - clusterducks maintainers (!UNKNOWN)
extends_documentation_fragment:
  - clusterducks.vdisk.attributes
  - clusterducks.vdisk.api
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows token metadata only, never the token.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
options:
  device:
    description: Device id the token is for.
    type: str
    required: true
  name:
    description: Name of the token among the device's tokens (1-63 characters C(A-Za-z0-9._-)).
    type: str
    default: default
  state:
    description:
      - V(present) creates the token if the device has none of that name; an existing token is left alone
        (its value is not known any more and is not returned).
      - V(absent) revokes it; the device can no longer read its boot record with it.
    type: str
    choices: [present, absent]
    default: present
  regenerate:
    description: With O(state=present), revoke an existing token of that name and create a new one.
    type: bool
    default: false
  dest:
    description:
      - File to write a newly created token to, with mode C(0600), on the host that runs the module.
      - When set, the token is written there and not returned in RV(token).
      - When not set, the token is returned once in RV(token); register the result with C(no_log=true).
    type: path
seealso:
  - module: clusterducks.vdisk.assignment
  - module: clusterducks.vdisk.storage_api_info
"""

EXAMPLES = r"""
- name: Issue node01's boot token and keep it in a root-only file on the controller
  clusterducks.vdisk.device_token:
    url: https://storage1.example.com:8443
    token: "{{ vdisk_api_admin_token }}"
    ca_path: /etc/clusterducks/vdisk-api-ca.crt
    device: node01
    dest: /etc/clusterducks/device-tokens/node01
  delegate_to: localhost

- name: Issue a token and hand it on (never print it)
  clusterducks.vdisk.device_token:
    url: https://storage1.example.com:8443
    token: "{{ vdisk_api_admin_token }}"
    device: node02
  register: node02_token
  no_log: true
  delegate_to: localhost

- name: Rotate node01's token
  clusterducks.vdisk.device_token:
    url: https://storage1.example.com:8443
    token: "{{ vdisk_api_admin_token }}"
    device: node01
    regenerate: true
    dest: /etc/clusterducks/device-tokens/node01
  delegate_to: localhost

- name: Revoke it
  clusterducks.vdisk.device_token:
    url: https://storage1.example.com:8443
    token: "{{ vdisk_api_admin_token }}"
    device: node01
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
token:
  description:
    - The new token (C(cdv1.<id>.<secret>)), only when this run created it and O(dest) is not set.
    - This is a secret. It is shown once; store it (or use O(dest)) and register the task with C(no_log=true).
  returned: changed and not O(dest) and not check mode
  type: str
  sample: cdv1.4b2ac8ad828b6f86.8Opp7U9mz92_AOHjD0m7gxh5lu-frq4a10wSTmoR8Hs
dest:
  description: File the new token was written to.
  returned: changed and O(dest) is set and not check mode
  type: str
  sample: /etc/clusterducks/device-tokens/node01
metadata:
  description: The token's metadata (no secret), V(null) when absent. In check mode for a new token, V(null).
  returned: success
  type: dict
  contains:
    id:
      description: Token id (public; the first part of the token).
      type: str
      sample: 4b2ac8ad828b6f86
    device:
      description: Device the token belongs to.
      type: str
      sample: node01
    name:
      description: Token name.
      type: str
      sample: default
    created_at:
      description: Creation time (UTC, ISO 8601).
      type: str
      sample: '2025-01-31T12:00:00Z'
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.clusterducks.vdisk.plugins.module_utils import api_client
from ansible_collections.clusterducks.vdisk.plugins.module_utils import rules


def write_secret(path, secret):
    """Write atomically with mode 0600 from the start (never briefly world-readable)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.device-token-')  # mkstemp creates 0600
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(to_bytes(secret + '\n'))
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main():
    argument_spec = api_client.api_argument_spec()
    argument_spec.update(
        device={'type': 'str', 'required': True},
        name={'type': 'str', 'default': 'default'},
        state={'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
        regenerate={'type': 'bool', 'default': False},
        dest={'type': 'path'},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    try:
        rules.check_device(params['device'])
    except rules.RuleError as exc:
        module.fail_json(msg=str(exc))
    if not rules.VDISK_RE.match(params['name']):
        module.fail_json(msg='token name %r is invalid: 1-63 characters A-Z, a-z, 0-9, ".", "_", "-"'
                         % params['name'])
    if params['dest'] and not os.path.isdir(os.path.dirname(os.path.abspath(params['dest']))):
        module.fail_json(msg='the directory of dest %s does not exist' % params['dest'])

    client = api_client.client_from_module(module)
    result = {'changed': False}
    try:
        current = next((t for t in client.list_tokens(params['device']) if t['name'] == params['name']), None)
        before = current
        if params['state'] == 'absent':
            result['metadata'] = None
            if current is not None:
                result['changed'] = True
                if not module.check_mode:
                    client.delete_token(current['id'])
            after = None
        elif current is not None and not params['regenerate']:
            result['metadata'] = after = current
        else:
            result['changed'] = True
            after = {'device': params['device'], 'name': params['name'], 'id': '(new)'}
            result['metadata'] = None
            if not module.check_mode:
                if current is not None:
                    client.delete_token(current['id'])
                meta, secret = client.create_token(params['device'], params['name'])
                result['metadata'] = after = meta
                if params['dest']:
                    try:
                        write_secret(params['dest'], secret)
                    except OSError as exc:
                        # The token exists but nobody has it: revoke it rather than leave an orphan.
                        client.delete_token(meta['id'])
                        module.fail_json(msg='cannot write the token to %s (token revoked again): %s'
                                         % (params['dest'], exc))
                    result['dest'] = params['dest']
                else:
                    result['token'] = secret
    except api_client.ApiError as exc:
        module.fail_json(msg=str(exc), status=exc.status, code=exc.code)

    if module._diff:
        result['diff'] = {'before': before or {}, 'after': after or {}}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
