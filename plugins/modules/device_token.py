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
    Save it then (O(dest)); it cannot be read back later.
  - With O(dest), the module keeps the file and the API in step. When the file is missing, empty, unreadable,
    does not hold a token, holds another token than the API's current one of that O(name), or a token the API
    rejects, the lost token cannot be restored, so the module issues a new one, writes it to O(dest) and
    revokes the old one (reported as changed, with the reason in RV(msg)).
  - A new token replaces an old one without a gap. The module issues the new token first (the API keeps the old
    one valid, marked as replaced), writes it to O(dest) (atomically, mode C(0600)), and only then revokes the old
    one. Whatever step fails, the old token is still valid. If only the revocation failed, the next run with the
    same O(dest) revokes it.
  - A device may hold several tokens with different O(name)s.
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
  diff_mode:
    support: full
    details:
      - The diff shows token metadata only, never the token.
  idempotent:
    support: partial
    details:
      - With O(regenerate=true) every run issues a new token and reports a change, by design.
      - Otherwise the second run reports no change, also with O(dest) as long as the file still holds the token.
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
      - V(present) creates the token if the device has none of that name. An existing token is left alone (its
        value is not known any more and is not returned), unless O(regenerate=true), or O(dest) is set and does not
        hold it.
      - V(absent) revokes it (and any older token of that name an interrupted rotation left valid); the device can
        no longer read its boot record with it.
    type: str
    choices: [present, absent]
    default: present
  regenerate:
    description:
      - With O(state=present), replace the token of that name by a new one, even if it is fine. The new token is
        issued and delivered (O(dest) or RV(token)) first, then the old one is revoked.
      - Every run with V(true) issues a new token, so the task always reports a change.
    type: bool
    default: false
  dest:
    description:
      - File that holds the device's token, with mode C(0600), on the host that runs the module. A new token is
        written there (atomically) and not returned in RV(token).
      - On every run the module checks that the file holds the API's current token of that O(name) (its id, and
        its secret with one request to the device's boot record as the device would make it); if not, it issues
        a new token as described above. In check mode it reports that it would.
      - When not set, a new token is returned once in RV(token); register the result with C(no_log=true).
        Then the module cannot tell whether the token was kept, and only O(regenerate=true) replaces it.
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
msg:
  description: What was done (or would be done, in check mode) and why, for example that O(dest) was missing.
  returned: changed
  type: str
  sample: >-
    the token file /etc/clusterducks/device-tokens/node01 is missing, and the API keeps only a hash of a token,
    so it cannot be read back; issued a new token 9c1f04d2e5a6b7c8 for device node01 (name default) and wrote it
    to /etc/clusterducks/device-tokens/node01; revoked the old token 4b2ac8ad828b6f86
token:
  description:
    - The new token (C(cdv1.<id>.<secret>)), only when this run created it and O(dest) is not set.
    - This is a secret. It is shown once; store it (or use O(dest)) and register the task with C(no_log=true).
    - Also returned when the task fails after the token was issued (revoking the old one failed).
  returned: a new token was issued, O(dest) is not set and not check mode
  type: str
  sample: cdv1.4b2ac8ad828b6f86.8Opp7U9mz92_AOHjD0m7gxh5lu-frq4a10wSTmoR8Hs
dest:
  description: File the new token was written to.
  returned: a new token was issued, O(dest) is set and not check mode
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
    replaced_by:
      description: Always V(null) here (the current token of that name is not replaced).
      type: str
      sample: null
before:
  description:
    - The token of that O(name) before the run, V(null) if there was none. Never holds the secret.
    - Returned in every mode; in diff mode the same data is also in C(diff).
  returned: success
  type: dict
  contains: &token_view
    id:
      description: Token id; V(null) in RV(after) in check mode when a new token would be issued.
      type: str
      sample: 4b2ac8ad828b6f86
    device:
      description: Device id.
      type: str
      sample: node01
    name:
      description: Token name.
      type: str
      sample: default
    created_at:
      description: Creation time (UTC, ISO 8601); V(null) in RV(after) in check mode for a new token.
      type: str
      sample: '2025-01-31T12:00:00Z'
    secret:
      description: Always masked, C(********), with the suffix " (new)" for a token this run issues.
      type: str
      sample: '********'
    replaced_tokens:
      description:
        - Ids of older tokens of this name that this one replaced and that are still valid
          (a rotation that was interrupted before it revoked them).
      type: list
      elements: str
      sample: []
    dest:
      description:
        - Only when O(dest) is set. What the file holds compared with this token. V(current) (the token, accepted
          by the API), V(missing), V(unreadable), V(empty), V(malformed) (not a device token), V(other_token)
          (another token id), V(rejected) (this token id with a secret the API does not accept).
      type: str
      sample: missing
after:
  description:
    - The token of that O(name) after the run (in check mode, as it would be), V(null) if there is none.
      Never holds the secret.
    - Returned in every mode; in diff mode the same data is also in C(diff).
  returned: success
  type: dict
  contains: *token_view
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text

from ansible_collections.clusterducks.vdisk.plugins.module_utils import api_client
from ansible_collections.clusterducks.vdisk.plugins.module_utils import atomic
from ansible_collections.clusterducks.vdisk.plugins.module_utils import rules

HIDDEN = '********'
TOKEN_PREFIX = 'cdv1'

# What the file at dest holds, compared with the API's current token of that name
# (the key is what before/after show, the text completes "the token file <dest> ...").
DEST_STATES = {
    'current': 'holds the current token',
    'missing': 'is missing',
    'unreadable': 'is unreadable',
    'empty': 'is empty',
    'malformed': 'does not hold a device token (malformed)',
    'other_token': 'holds another token (other token id)',
    'rejected': 'holds a token the API rejects (the right token id, a wrong secret)',
}


def write_secret(path, secret):
    """Atomically and durably, mode 0600 from the start: the rename must survive a power cut before the old
    token is revoked."""
    atomic.write_atomic(path, secret + '\n', mode=0o600)


def read_dest(path):
    """(state, token): state is a DEST_STATES key, or None when the file holds a well-formed token."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read(4096)
    except FileNotFoundError:
        return 'missing', None
    except OSError:
        return 'unreadable', None
    text = to_text(data, errors='surrogate_or_replace').strip()
    if not text:
        return 'empty', None
    parts = text.split('.')
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 16 or not parts[2]:
        return 'malformed', None
    return None, text


def dest_state(client, device, path, current):
    """Whether the file at ``path`` holds ``current``, the API's current token (checked with the API)."""
    state, token = read_dest(path)
    if state is not None:
        return state
    if current is None or token.split('.')[1] != current['id']:
        return 'other_token'
    return 'current' if client.device_token_works(device, token) else 'rejected'


def view(meta, secret=HIDDEN, dest=None, replaced=()):
    """A token as before/after show it: metadata, the secret masked, the state of dest."""
    if meta is None:
        return None
    out = dict((key, meta.get(key)) for key in ('id', 'device', 'name', 'created_at'))
    out['secret'] = secret
    out['replaced_tokens'] = list(replaced)
    if dest is not None:
        out['dest'] = dest
    return out


def plan(params, current, stale, state_of_dest):
    """What to do: (issue a new token?, ids to revoke once it is delivered, why)."""
    stale_ids = [t['id'] for t in stale]
    if params['state'] == 'absent':
        return False, stale_ids + ([current['id']] if current else []), 'absent'
    if current is None:
        return True, stale_ids, 'none'
    if params['regenerate']:
        return True, [current['id']] + stale_ids, 'regenerate'
    if params['dest'] and state_of_dest != 'current':
        return True, [current['id']] + stale_ids, 'dest'
    if stale_ids and params['dest']:
        # dest holds the current token: the older ones are what an interrupted rotation left valid.
        return False, stale_ids, 'stale'
    return False, [], None


def message(params, why, new_id, revoke, state_of_dest, check_mode):
    """The result's msg (future tense in check mode), or None when nothing changes."""
    dest = params['dest']
    parts = []
    if why == 'dest':
        parts.append('the token file %s %s, and the API keeps only a hash of a token, so it cannot be read back'
                     % (dest, DEST_STATES[state_of_dest]))
    if why in ('none', 'regenerate', 'dest'):
        parts.append('%s a new token%s for device %s (name %s)%s'
                     % ('would issue' if check_mode else 'issued', '' if check_mode else ' ' + new_id,
                        params['device'], params['name'],
                        (' and %s it to %s' % ('write' if check_mode else 'wrote', dest)) if dest else ''))
    if revoke:
        what = {'regenerate': 'the old token', 'dest': 'the old token',
                'stale': 'the token(s) an interrupted rotation left valid,'}.get(why, 'token')
        parts.append('%s %s %s' % ('would revoke' if check_mode else 'revoked', what, ', '.join(revoke)))
    return '; '.join(parts) or None


def argument_spec():
    spec = api_client.api_argument_spec()
    spec.update(
        device={'type': 'str', 'required': True},
        name={'type': 'str', 'default': 'default'},
        state={'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
        regenerate={'type': 'bool', 'default': False},
        dest={'type': 'path'},
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        rules.check_device(params['device'])
    except rules.RuleError as exc:
        module.fail_json(msg=str(exc))
    if not rules.VDISK_RE.fullmatch(params['name']):  # the API's own check of token names
        module.fail_json(msg='token name %r is invalid: 1-63 characters A-Z, a-z, 0-9, ".", "_", "-"'
                         % params['name'])
    dest = params['dest']
    if dest and os.path.isdir(dest):
        module.fail_json(msg='dest %s is a directory; give the path of the token file' % dest)
    if dest and not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
        module.fail_json(msg='the directory of dest %s does not exist' % dest)

    client = api_client.client_from_module(module)
    try:
        named = [t for t in client.list_tokens(params['device']) if t['name'] == params['name']]
        current = next((t for t in named if not t.get('replaced_by')), None)
        stale = [t for t in named if t.get('replaced_by')]
        state_of_dest = None
        if dest and current is not None and params['state'] == 'present':
            state_of_dest = dest_state(client, params['device'], dest, current)
    except api_client.ApiError as exc:
        module.fail_json(msg=str(exc), status=exc.status, code=exc.code)
    issue, revoke, why = plan(params, current, stale, state_of_dest)

    before = view(current, dest=state_of_dest, replaced=[t['id'] for t in stale])
    result = {'changed': issue or bool(revoke), 'before': before, 'after': dict(before) if before else None,
              'metadata': None if issue or params['state'] == 'absent' else current}
    if params['state'] == 'absent':
        result['after'] = None
    elif issue:
        result['after'] = view({'device': params['device'], 'name': params['name']}, secret=HIDDEN + ' (new)',
                               dest='current' if dest else None)
    elif revoke:
        result['after'] = view(current, dest=state_of_dest)
    if stale and not dest and not issue and params['state'] == 'present':
        module.warn('token(s) %s of device %s were replaced by token %s but are still valid (an interrupted '
                    'rotation). Without dest this module cannot tell whether the new token was kept: run it with '
                    'the dest that holds token %s, or with regenerate=true to replace them all with a new token'
                    % (', '.join(t['id'] for t in stale), params['device'], current['id'], current['id']))

    def finish(new_id=None):
        msg = message(params, why, new_id, revoke, state_of_dest, module.check_mode)
        if msg:
            result['msg'] = msg
        if module._diff:
            result['diff'] = {'before': result['before'] or {}, 'after': result['after'] or {}}
        module.exit_json(**result)

    if module.check_mode or not result['changed']:
        finish()

    # Issue and deliver the new token before anything is revoked: until the
    # last step, the old token stays valid, whatever fails.
    new = None
    if issue:
        try:
            meta, secret = client.create_token(params['device'], params['name'],
                                               replaces=current['id'] if current else None)
        except api_client.ApiError as exc:
            msg = 'cannot issue a new token: %s' % exc
            if exc.code == 'invalid_token_request' and 'replaces' in str(exc):
                msg += (' (the storage API is older than this module: update it with the role '
                        'clusterducks.vdisk.storage_api)')
            if current is not None:
                msg += '; the old token %s is still valid' % current['id']
            module.fail_json(msg=msg, status=exc.status, code=exc.code, changed=False, before=before, after=before)
        new = meta['id']
        result['metadata'] = meta
        result['after'] = view(meta, secret=HIDDEN + ' (new)', dest='current' if dest else None)
        if dest:
            try:
                write_secret(dest, secret)
            except OSError as exc:
                msg = 'cannot write the new token to %s (the file is unchanged): %s' % (dest, exc)
                try:
                    client.delete_token(new)
                    msg += '; the new token %s was revoked again' % new
                except api_client.ApiError as exc2:
                    msg += ('; revoking the new token %s failed too (%s): nobody has it, the next run replaces it'
                            % (new, exc2))
                if current is not None:
                    msg += '; the old token %s is still valid' % current['id']
                module.fail_json(msg=msg, changed=False, before=before, after=before)
            result['dest'] = dest
        else:
            result['token'] = secret
    for done, token_id in enumerate(revoke):
        try:
            client.delete_token(token_id)
        except api_client.ApiError as exc:
            msg = 'cannot revoke token %s: %s; it stays valid until it is revoked' % (token_id, exc)
            if new:
                msg = 'issued the new token %s (%s), but %s' % (
                    new, ('written to %s' % dest) if dest else 'returned in token', msg)
                msg += ('. Run the task again to finish.' if dest else
                        '. Revoke it with DELETE /api/v1/tokens/%s.' % token_id)
            if result['after'] is not None:
                result['after']['replaced_tokens'] = revoke[done:]  # still valid
            module.fail_json(msg=msg, status=exc.status, code=exc.code, **result)
    finish(new)


if __name__ == '__main__':
    main()
