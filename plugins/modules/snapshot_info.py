#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot_info
short_description: List the snapshots of vDisks in an LVM thin pool, with their age and the space they use
version_added: 0.1.0
description:
  - Lists the snapshots of one vDisk or of every vDisk of an LVM thin pool, oldest first, with their kind, age and
    size, the pool's fill, and the schedule's last round (from its status file).
  - With O(space=true), also the space each snapshot uses, read from a metadata snapshot of the thin pool with
    C(thin_ls) - C(mapped_bytes) (what it maps) and C(exclusive_bytes) (what deleting it would give back).
  - Snapshots of one vDisk with the same C(thin_id) share one thin device (a round found the vDisk unwritten since
    its last snapshot); they show the same space, which the device frees when the last of them is deleted.
author:
  - clusterducks maintainers (!UNKNOWN)
extends_documentation_fragment:
  - clusterducks.vdisk.attributes
  - clusterducks.vdisk.attributes.info_module
  - clusterducks.vdisk.attributes.platform
  - clusterducks.vdisk.attributes.idempotent
  - clusterducks.vdisk.attributes.idempotent_not_modify_state
options:
  pool:
    description: The LVM thin pool, V(lvm-thin:VG/POOL).
    type: str
    required: true
  vdisk:
    description: Only this vDisk's snapshots.
    type: str
  space:
    description:
      - Read the space each snapshot uses. This takes the pool's one metadata snapshot for a moment (C(thin_ls)); it
        costs about a second per few thousand thin devices.
    type: bool
    default: false
requirements:
  - lvm2 and thin-provisioning-tools on the storage host (the M(clusterducks.vdisk.storage_host) role installs them)
seealso:
  - module: clusterducks.vdisk.snapshot
"""

EXAMPLES = r"""
- name: List node01's snapshots with the space they use
  clusterducks.vdisk.snapshot_info:
    pool: lvm-thin:vdisks/pool
    vdisk: node01
    space: true
  register: snaps

- name: Show the newest
  ansible.builtin.debug:
    msg: "{{ snaps.snapshots | last }}"
"""

RETURN = r"""
snapshots:
  description: The snapshots, oldest first, with the keys of RV(clusterducks.vdisk.snapshot#module:snapshot).
  returned: success
  type: list
  elements: dict
  sample:
    - {vdisk: node01, name: auto-20261127T021000Z, kind: scheduled, created: '2026-11-27T02:10:00Z', age_seconds: 60,
       size_bytes: 1073741824, thin_id: 8388610, wwn: 0a6c1f58-3d0c-4b4e-9bd6-6f2f0a4c2e10, state: ready,
       parent: null, mapped_bytes: 52428800, exclusive_bytes: 65536}
pool:
  description: The thin pool's fill, from its device-mapper status.
  returned: success
  type: dict
  sample: {data_percent: 12.5, metadata_percent: 3.1, data_bytes: 4294967296, data_bytes_used: 536870912, mode: rw}
schedule:
  description: The schedule's status file (last round, counters), or none if no round has run on this pool.
  returned: success
  type: dict
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.clusterducks.vdisk.plugins.module_utils import rules, snapshot_schedule, thin_snapshots
from ansible_collections.clusterducks.vdisk.plugins.module_utils.devmapper import DeviceMapperError


def main():
    module = AnsibleModule(
        argument_spec={
            'pool': {'type': 'str', 'required': True},
            'vdisk': {'type': 'str'},
            'space': {'type': 'bool', 'default': False},
        },
        supports_check_mode=True,
    )
    params = module.params

    def run(argv):
        try:
            return module.run_command(argv, handle_exceptions=False)
        except OSError as exc:
            return 127, '', '%s: %s' % (argv[0], exc)

    try:
        if params['vdisk'] is not None:
            rules.check_vdisk(params['vdisk'])
        snapshots = thin_snapshots.ThinSnapshots(params['pool'], run, read_only=True)
        try:
            now = time.time()
            rows = [s.to_dict(now) for s in snapshots.list(params['vdisk'])]
            if params['space']:
                space = snapshots.space()
                for row in rows:
                    row['mapped_bytes'], row['exclusive_bytes'] = space.get(row['thin_id'], (None, None))
            usage = snapshots.pool_usage()
        finally:
            snapshots.close()
    except (rules.RuleError, thin_snapshots.SnapshotError, DeviceMapperError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, snapshots=rows, pool=usage,
                     schedule=snapshot_schedule.read_status(params['pool']))


if __name__ == '__main__':
    main()
