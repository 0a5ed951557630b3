#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: vdisk
short_description: Manage vDisks in a storage pool and their LIO backstores
version_added: 0.1.0
description:
  - Creates, grows and deletes vDisks, the per-device persistent disks of clusterducks, on a storage host.
  - A vDisk lives in a pool and is exported as a LIO fileio backstore named after it, with a WWN (T10 unit serial)
    that never changes for the life of the vDisk. The initiator sees that WWN as C(/dev/disk/by-id/wwn-*).
  - The backstore has write-back caching off (fileio write-back loses data the initiator flushed when the storage
    host crashes) and AIO off (LIO's AIO path does not honour O_DSYNC, so without a write cache acknowledged writes
    would not be durable). A backstore found with either on is recreated with the same WWN.
  - With the btrfs pool backend each vDisk is a subvolume of the pool (the unit of snapshots and replication)
    holding a sparse, nodatacow backing file and C(vdisk.json), its metadata.
  - A new vDisk is formatted once, on the storage host, at creation - as a whole disk or as a GPT with one
    filesystem per partition, so that the seed's I(partition N -> mountpoint) assignments work. An existing vDisk is
    never formatted again.
  - Growing keeps the WWN and every LUN and initiator mapping (LIO cannot resize a fileio backstore, so it is
    recreated with the same WWN and relinked). Shrinking is refused. Deleting a vDisk that a target exports needs
    O(force=true).
  - Many vDisks can be managed in one run with O(vdisks); one run makes one pass over LIO and saves its
    configuration once, which is what makes hundreds of vDisks fast.
  - Runs against one host are serialized with a lock; every change is saved to LIO's save file
    (C(/etc/rtslib-fb-target/saveconfig.json) on Debian, mode 0600, written atomically) so it is restored at boot.
author:
  - clusterducks maintainers (!UNKNOWN)
extends_documentation_fragment:
  - clusterducks.vdisk.attributes
  - clusterducks.vdisk.attributes.platform
  - clusterducks.vdisk.attributes.idempotent
attributes:
  check_mode:
    support: full
    details:
      - Check mode plans with the same code as a real run, so the plan and the change cannot disagree. Before the
        pool exists (a check run of the storage_host role on a fresh host) every vDisk is planned as new.
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  pool:
    description:
      - The pool holding the vDisks. For the btrfs backend, the absolute path of a mounted btrfs filesystem
        (the M(clusterducks.vdisk.storage_host) role creates it).
    type: str
    required: true
  name:
    description:
      - Name of one vDisk. Also the name of its LIO backstore.
      - 1-63 letters, digits, V(.), V(_) or V(-), starting with a letter or digit; no V(/) and no V(..). The
        storage API and M(clusterducks.vdisk.iscsi_target) apply the same rule.
      - Mutually exclusive with O(vdisks).
    type: str
  size:
    description:
      - Size of the vDisk, with a unit (V(10G), V(512MiB), V(1T)). K, M, G, T and KiB, MiB, GiB, TiB are binary;
        KB, MB, GB, TB are decimal (V(10GB) is 10^10 bytes). Rounded up to a whole MiB.
      - Required to create a vDisk. A larger size grows an existing vDisk; a smaller one is refused.
    type: str
  filesystem:
    description:
      - Filesystem made on the whole vDisk at creation. Ignored for an existing vDisk, except that a different
        value is reported as an error (nothing is ever reformatted).
      - V(none) leaves the disk blank (the device partitions or formats it itself); it is required with O(partitions).
      - Defaults to V(xfs) without O(partitions) and V(none) with them. XFS needs at least 300 MiB.
    type: str
    choices: [xfs, ext4, none]
  partitions:
    description:
      - A GPT partition table made at creation, partition 1 first. Partition N is what an assignment mounts as key N.
      - Ignored for an existing vDisk, except that a different layout is reported as an error.
    type: list
    elements: dict
    suboptions: &partition_options
      size:
        description:
          - Size of the partition (V(1G), V(500M)). The last partition may omit it to take the rest of the disk.
        type: str
      filesystem:
        description: Filesystem made on the partition.
        type: str
        choices: [xfs, ext4, none]
        default: xfs
  state:
    description:
      - V(present) creates or grows the vDisk; V(absent) deletes it with its data.
      - With O(vdisks), the default for items that do not set their own.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - Allow deleting a vDisk that a target exports. Its LUNs and initiator mappings are removed first.
      - With O(vdisks), the default for items that do not set their own.
    type: bool
    default: false
  vdisks:
    description:
      - Many vDisks in one run. Each item takes O(name), O(size), O(filesystem), O(partitions), O(state) and
        O(force) as above; O(state) and O(force) default to the module's own.
      - Each listed vDisk is brought to its item (created, grown or deleted); vDisks the list does not name are
        left alone unless O(purge=true). See the table in C(docs/storage-host.md) for what a list does.
      - Mutually exclusive with O(name), O(size), O(filesystem) and O(partitions) (top-level values would be
        silently ignored).
    type: list
    elements: dict
    suboptions:
      name:
        description: Name of the vDisk (as O(name)).
        type: str
        required: true
      size:
        description: As O(size).
        type: str
      filesystem:
        description: As O(filesystem).
        type: str
        choices: [xfs, ext4, none]
      partitions:
        description: As O(partitions).
        type: list
        elements: dict
        suboptions: *partition_options
      state:
        description: As O(state); defaults to the module's O(state).
        type: str
        choices: [present, absent]
      force:
        description: As O(force); defaults to the module's O(force). A real boolean (V("no") is false).
        type: bool
  purge:
    description:
      - Make O(vdisks) authoritative for the pool. vDisks in the pool that the list does not name are reported in
        RV(unlisted) and a warning, and kept.
      - With O(force=true) as well, they are deleted with their data, LUNs and initiator mappings. Data is never
        deleted by leaving a vDisk out of a list alone.
      - Only with O(vdisks).
    type: bool
    default: false
requirements:
  - python3-rtslib-fb
  - btrfs-progs, xfsprogs, e2fsprogs, gdisk (for partitions) on the storage host
notes:
  - Growing a partitioned vDisk adds free space after the last partition; the device grows its partition table
    and filesystem itself (for example C(sgdisk -e) and C(growpart)).
  - The initiator sees a grown vDisk after a rescan (C(iscsiadm -m session --rescan)). Recreating the backstore removes
    the LUN for a moment; I/O in flight is retried by the initiator.
seealso:
  - module: clusterducks.vdisk.iscsi_target
  - module: clusterducks.vdisk.lio_info
"""

EXAMPLES = r"""
- name: A 10 GiB vDisk with one XFS filesystem (assignment mounts key 0)
  clusterducks.vdisk.vdisk:
    pool: /srv/vdisks
    name: node01
    size: 10G

- name: A vDisk with two partitions (assignment mounts keys 1 and 2)
  clusterducks.vdisk.vdisk:
    pool: /srv/vdisks
    name: node02
    size: 20G
    partitions:
      - size: 2G
        filesystem: ext4
      - filesystem: xfs    # the rest of the disk

- name: Many vDisks in one run (one LIO pass, one save)
  clusterducks.vdisk.vdisk:
    pool: /srv/vdisks
    vdisks:
      - name: node03
        size: 10G
      - name: node04
        size: 10G
        filesystem: ext4
      - name: old-node
        state: absent

- name: Grow node01 (same WWN, same LUNs; the device rescans to see it)
  clusterducks.vdisk.vdisk:
    pool: /srv/vdisks
    name: node01
    size: 20G

- name: Delete node02 even though a target exports it
  clusterducks.vdisk.vdisk:
    pool: /srv/vdisks
    name: node02
    state: absent
    force: true

- name: The pool holds exactly these vDisks; report any other (add force true to delete them)
  clusterducks.vdisk.vdisk:
    pool: /srv/vdisks
    purge: true
    vdisks:
      - name: node01
        size: 10G
      - name: node03
        size: 10G
  register: pool_state

- name: Show vDisks nobody declared
  ansible.builtin.debug:
    var: pool_state.unlisted
"""

RETURN = r"""
before:
  description:
    - Each vDisk of the run by name, as it was before (V(null) if it did not exist). Always returned, not only
      in diff mode.
  returned: success
  type: dict
  sample:
    node01: {size_bytes: 10737418240, filesystem: xfs, partitions: [], wwn: 5bd27db6-4f57-4a0c-9c55-1e2b5d8f6e1a,
             exported_by: []}
after:
  description:
    - Each vDisk of the run by name, as the run leaves it (or would, in check mode); V(null) when deleted. A vDisk
      still to be created has the WWN V((new)).
  returned: success
  type: dict
  sample:
    node01: {size_bytes: 21474836480, filesystem: xfs, partitions: [], wwn: 5bd27db6-4f57-4a0c-9c55-1e2b5d8f6e1a,
             exported_by: []}
unlisted:
  description: With O(purge=true) and without O(force), the vDisks in the pool that the list does not name (kept).
  returned: success
  type: list
  elements: str
  sample: [old-node]
vdisk:
  description: The vDisk, when O(name) was given.
  returned: success and O(name) was given
  type: dict
  sample:
    name: node01
    state: present
    path: /srv/vdisks/node01/disk.img
    size_bytes: 10737418240
    size: 10G
    wwn: 5bd27db6-4f57-4a0c-9c55-1e2b5d8f6e1a
    filesystem: xfs
    partitions: []
    created: '2026-11-26T01:00:00Z'
    exported_by:
      - {target: 'iqn.2026-11.io.clusterducks:node01', tpg: 1, lun: 0}
    actions: [created, exported]
vdisks:
  description:
    - Every vDisk the run was given, in order, with the keys of RV(vdisk).
    - C(actions) lists what was done (or would be done in check mode) - V(created), V(exported),
      V(grown), V(reexported) (backstore recreated with the same WWN), V(deleted).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Name of the vDisk and its backstore.
      type: str
      returned: always
    state:
      description: V(present) or V(absent).
      type: str
      returned: always
    path:
      description: The backing file on the storage host.
      type: str
      returned: when present
    size_bytes:
      description: Size in bytes.
      type: int
      returned: when present
    wwn:
      description: The T10 unit serial LIO reports for the disk; never changes for the life of the vDisk.
      type: str
      returned: when present
    filesystem:
      description: Filesystem made at creation on the whole disk (V(none) if partitioned or blank).
      type: str
      returned: when present
    partitions:
      description: Partitions made at creation (C(number), C(size_bytes), C(filesystem)).
      type: list
      elements: dict
      returned: when present
    exported_by:
      description: The targets that export the vDisk (C(target), C(tpg), C(lun)).
      type: list
      elements: dict
      returned: always
    actions:
      description: What was done.
      type: list
      elements: str
      returned: always
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio, lio_backstore, resource_run, vdisk_resource
from ansible_collections.clusterducks.vdisk.plugins.module_utils.locking import LockTimeout, host_lock
from ansible_collections.clusterducks.vdisk.plugins.module_utils.pool import PoolError, open_pool
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import ValidationError

FILESYSTEM = {'type': 'str', 'choices': ['xfs', 'ext4', 'none']}
PARTITION_SPEC = {'size': {'type': 'str'}, 'filesystem': dict(FILESYSTEM, default='xfs')}
PARTITIONS = {'type': 'list', 'elements': 'dict', 'options': PARTITION_SPEC}
STATE = {'type': 'str', 'choices': ['present', 'absent']}


class _NoPoolYet(object):
    """Check mode on a host whose pool is not made yet: every vDisk is new."""

    def __init__(self, path):
        self.path = path

    def get(self, name):
        return None

    def list(self):
        return []


def run_module():
    module = AnsibleModule(
        argument_spec={
            'pool': {'type': 'str', 'required': True},
            'name': {'type': 'str'},
            'size': {'type': 'str'},
            'filesystem': FILESYSTEM,
            'partitions': PARTITIONS,
            'state': dict(STATE, default='present'),
            'force': {'type': 'bool', 'default': False},
            'purge': {'type': 'bool', 'default': False},
            # Suboptions, so Ansible converts each item's values ("no" -> False).
            'vdisks': {'type': 'list', 'elements': 'dict', 'options': {
                'name': {'type': 'str', 'required': True},
                'size': {'type': 'str'},
                'filesystem': FILESYSTEM,
                'partitions': PARTITIONS,
                'state': STATE,
                'force': {'type': 'bool'},
            }},
        },
        mutually_exclusive=[('name', 'vdisks'), ('vdisks', 'size'), ('vdisks', 'filesystem'),
                            ('vdisks', 'partitions'), ('name', 'purge')],
        required_one_of=[('name', 'vdisks')],
        supports_check_mode=True,
    )
    check_mode = module.check_mode
    if not (check_mode and not lio.HAS_RTSLIB):
        lio.require_rtslib(module)

    def run(argv):
        return module.run_command(argv)

    try:
        items = vdisk_resource.requested(module.params)
        pool = open_pool(module.params['pool'], run)
        try:
            pool.check()
        except PoolError as exc:
            if not check_mode:
                raise
            # A check run before the storage_host role has made and mounted the pool.
            module.warn('%s: planning every vDisk as new (check mode)' % exc)
            pool = _NoPoolYet(pool.path)
        if lio.HAS_RTSLIB:
            root = lio.open_root()
            with host_lock():
                result = converge(module, pool, root, items)
        else:
            module.warn('python3-rtslib-fb is not installed yet: planning as if LIO were empty (check mode)')
            result = converge(module, pool, None, items)
    except (ValidationError, PoolError, lio.LIOError, LockTimeout, lio.ChangeFailed) as exc:
        module.fail_json(msg=str(exc))
    except (lio.rtslib_errors()[0], OSError) as exc:
        module.fail_json(msg='changing LIO or the pool failed: %s' % exc, exception=traceback.format_exc())
    module.exit_json(**result)


def _no_backstore(name):
    return None


def converge(module, pool, root, items):
    params = module.params
    if root is None:
        exports, lookup = {}, _no_backstore
    else:
        exports, lookup = lio_backstore.exports_index(root), lio_backstore.lookup
    # Plan everything first: a run with one bad item changes nothing.
    steps, unlisted = vdisk_resource.plan(pool, items, exports, lookup, purge=params['purge'],
                                          purge_force=params['force'])
    if unlisted:
        module.warn('vDisks in pool %s that the list does not name (kept; force=true with purge=true deletes '
                    'them and their data): %s' % (pool.path, ', '.join(unlisted)))
    if not module.check_mode:
        lio.apply_changes(root, [step.step() for step in vdisk_resource.apply_order(steps) if step.actions],
                          subject='LIO or the pool')
    result = resource_run.result([(s.key, s.actions, s.before, s.after) for s in steps], module._diff)
    result['vdisks'] = [step.describe() for step in steps]
    result['unlisted'] = unlisted
    if params['name'] is not None:
        result['vdisk'] = result['vdisks'][0]
    return result


def main():
    run_module()


if __name__ == '__main__':
    main()
