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
  - Creates, grows, moves and deletes vDisks, the per-device persistent disks of clusterducks, on a storage host.
  - A vDisk lives in a pool and is exported as a LIO backstore named after it, with a WWN (T10 unit serial) that never
    changes for the life of the vDisk. The initiator sees that WWN as C(/dev/disk/by-id/wwn-*).
  - "In an LVM thin pool (O(pool=lvm-thin:VG/POOL), the default path, see C(docs/data-path.md)) a vDisk is a thin
    volume C(/dev/VG/vdisk-NAME) exported as a C(block) backstore. The device's write cache, flushes and FUA pass
    through to the disk, so the initiator's fsync is durable, except for the writes a storage host that dies can take
    back (below, O(write_through)). C(emulate_tpu) and
    C(emulate_tpws) are set, so the device's discards give space back to the pool. Its metadata, C(vdisk.json), is
    kept in C(/var/lib/clusterducks-vdisk/lvm-thin/VG/POOL/NAME/)."
  - In a btrfs pool (an absolute path) a vDisk is a subvolume holding a sparse, nodatacow backing file and
    C(vdisk.json), exported as a C(fileio) backstore with write-back off (fileio write-back loses data the initiator
    flushed when the storage host crashes) and AIO off (LIO's AIO path does not honour O_DSYNC, so without a write
    cache acknowledged writes would not be durable). A backstore found with either on is recreated with the same WWN.
  - A new vDisk is formatted once, on the storage host, at creation - as a whole disk or as a GPT with one
    filesystem per partition, so that the seed's I(partition N -> mountpoint) assignments work. An existing vDisk is
    never formatted again.
  - Growing keeps the WWN and every LUN and initiator mapping. In an LVM thin pool it is C(lvextend) and nothing
    else (LIO reads a block backstore's size from its device), so I/O in flight never fails. A fileio backstore
    cannot be resized, so it is recreated with the same WWN and relinked; while an initiator is logged in that is
    refused unless O(force=true) (for that moment LIO shows the initiator a 32 KiB read-only placeholder disk, which
    it keeps until it rescans, so its writes fail). The same holds for re-creating a fileio backstore found with
    unsafe settings. A write-through thin vDisk (O(write_through=true)) grows like a block one, as LIO reads its
    device's size. Growing a partitioned vDisk moves the GPT
    backup header to the new end. Shrinking is refused. Deleting a vDisk that a target exports needs O(force=true).
  - "O(write_through=true) exports a thin vDisk as a C(fileio) backstore on its thin volume, write-back and AIO off:
    the initiator sees no write cache, every write is synchronous, and the thin pool commits a new chunk's mapping
    before LIO completes the write. Without it (the default), a storage host that dies can take back writes the
    initiator had flushed: a write completed into a new thin chunk (its mapping not yet committed) is lost with
    the host, and the initiator's flush, sent again after the host restarts, succeeds. In the lab write-through
    kept 28 % of the 4k random-write IOPS at queue depth 16, 72 % of random reads and 83 % of sequential writes,
    and made fsync'd writes at queue depth 1 faster (144 %), since such a vDisk serves one command at a time
    (C(docs/data-path.md), I(Write-through)). Changing it on an existing vDisk re-creates its backstore (same WWN,
    LUNs and mappings), which needs O(force=true) while an initiator is logged in."
  - O(migrate_from) moves a vDisk from another pool (a btrfs pool of a host set up before LVM thin) into O(pool) - its
    data, WWN, LUNs and initiator mappings. See C(docs/storage-host.md).
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
      - A move (O(migrate_from)) is planned in full - the pool, the size, the sessions - and reported as V(migrated).
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  pool:
    description:
      - The pool holding the vDisks (the M(clusterducks.vdisk.storage_host) role creates it).
      - V(lvm-thin:VG/POOL) - the thin pool POOL of the LVM volume group VG, the default path (the role's default is
        V(lvm-thin:vdisks/pool)). Sizes are rounded up to the volume group's extent size (4 MiB by default). No
        vDisk is created or grown while the thin pool's data or metadata is 90% full or more.
      - An absolute path - a mounted btrfs filesystem, the path of hosts set up before LVM thin.
      - Any other value is refused before anything changes.
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
  migrate_from:
    description:
      - Another pool (as O(pool), typically the btrfs path V(/srv/vdisks)) to move the vDisk from when O(pool) does
        not have it yet. The data is copied into a new volume of O(pool) of the same size (rounded up to the extent
        size) and the backstore is swapped to it with the same name, WWN, LUNs and initiator mappings, so the device
        sees the same disk. The copy in the old pool is kept; delete it there with O(state=absent) when you are sure.
      - The device must be shut down (no initiator logged in to a target exporting the vDisk). The move is refused
        otherwise, since writes during the copy would be lost. No LUN exports the vDisk while its data is copied.
      - A vDisk that neither pool has is created as usual; one that O(pool) has already is left to the other options.
      - With O(vdisks), the default for items that do not set their own.
    type: str
  state:
    description:
      - V(present) creates or grows the vDisk; V(absent) deletes it with its data.
      - With O(vdisks), the default for items that do not set their own.
    type: str
    choices: [present, absent]
    default: present
  write_through:
    description:
      - V(true) exports the vDisk write-through (see the description); V(false) write-back, as a C(block)
        backstore. Unset keeps an existing vDisk as it is and makes a new one write-back.
      - Only LVM thin vDisks have the choice. A btrfs pool always exports write-through; V(false) there is refused.
      - With O(vdisks), the default for items that do not set their own.
    type: bool
  force:
    description:
      - Allow deleting a vDisk that a target exports. Its LUNs and initiator mappings are removed first.
      - Allow re-creating a backstore (to grow a fileio vDisk of a btrfs pool, to turn off unsafe settings, or to
        change O(write_through)) while an initiator is logged in. That initiator must rescan or log in again
        afterwards.
      - Not needed to delete the old copy of a moved vDisk (O(migrate_from)). The backstore of that name exports the
        new copy and is left alone.
      - With O(vdisks), the default for items that do not set their own.
    type: bool
    default: false
  vdisks:
    description:
      - Many vDisks in one run. Each item takes O(name), O(size), O(filesystem), O(partitions), O(state),
        O(force), O(migrate_from) and O(write_through) as above; O(state), O(force), O(migrate_from) and
        O(write_through) default to the module's own.
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
      migrate_from:
        description: As O(migrate_from); defaults to the module's O(migrate_from).
        type: str
      write_through:
        description: As O(write_through); defaults to the module's O(write_through). A real boolean.
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
  - lvm2 and thin-provisioning-tools (LVM thin pools) or btrfs-progs (btrfs pools), xfsprogs, e2fsprogs, gdisk (for
    partitions) on the storage host
notes:
  - Growing a partitioned vDisk adds free space after the last partition; the device grows its partition table
    and filesystem itself (for example C(sgdisk -e) and C(growpart)).
  - The initiator sees a grown vDisk after a rescan (C(iscsiadm -m session --rescan)). In a btrfs pool, recreating the
    fileio backstore removes the LUN for a moment and I/O arriving then fails; grow such vDisks while their device is
    idle, or move them to an LVM thin pool.
  - The storage host's page cache of a thin volume does not see what the device writes through LIO; the module drops
    it (C(blockdev --flushbufs)) before it reads a vDisk's partition table.
seealso:
  - module: clusterducks.vdisk.iscsi_target
  - module: clusterducks.vdisk.lio_info
"""

EXAMPLES = r"""
- name: A 10 GiB vDisk with one XFS filesystem (assignment mounts key 0)
  clusterducks.vdisk.vdisk:
    pool: lvm-thin:vdisks/pool
    name: node01
    size: 10G

- name: A vDisk with two partitions (assignment mounts keys 1 and 2)
  clusterducks.vdisk.vdisk:
    pool: lvm-thin:vdisks/pool
    name: node02
    size: 20G
    partitions:
      - size: 2G
        filesystem: ext4
      - filesystem: xfs    # the rest of the disk

- name: Many vDisks in one run (one LIO pass, one save)
  clusterducks.vdisk.vdisk:
    pool: lvm-thin:vdisks/pool
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
    pool: lvm-thin:vdisks/pool
    name: node01
    size: 20G

- name: Delete node02 even though a target exports it
  clusterducks.vdisk.vdisk:
    pool: lvm-thin:vdisks/pool
    name: node02
    state: absent
    force: true

- name: The pool holds exactly these vDisks; report any other (add force true to delete them)
  clusterducks.vdisk.vdisk:
    pool: lvm-thin:vdisks/pool
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

- name: A write-through vDisk - a storage host crash cannot take back a write it acknowledged
  clusterducks.vdisk.vdisk:
    pool: lvm-thin:vdisks/pool
    name: puppet-ca
    size: 5G
    write_through: true

- name: Move node01 and node02 from the btrfs pool of an older host (their devices are shut down)
  clusterducks.vdisk.vdisk:
    pool: lvm-thin:vdisks/pool
    migrate_from: /srv/vdisks
    vdisks:
      - name: node01
      - name: node02
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
             backstore: block, write_through: false, backing: /dev/vdisks/vdisk-node01, exported_by: []}
after:
  description:
    - Each vDisk of the run by name, as the run leaves it (or would, in check mode); V(null) when deleted. A vDisk
      still to be created has the WWN V((new)).
  returned: success
  type: dict
  sample:
    node01: {size_bytes: 21474836480, filesystem: xfs, partitions: [], wwn: 5bd27db6-4f57-4a0c-9c55-1e2b5d8f6e1a,
             backstore: block, write_through: false, backing: /dev/vdisks/vdisk-node01, exported_by: []}
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
    backstore: block
    write_through: false
    path: /dev/vdisks/vdisk-node01
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
      V(grown), V(reexported) (backstore recreated with the same WWN), V(tuned) (block backstore attributes set in
      place), V(cache_changed) (O(write_through) changed; with V(reexported)), V(migrated) (moved from
      O(migrate_from)), V(deleted).
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
    backstore:
      description: The LIO backstore plugin that exports it - V(block) (LVM thin pool) or V(fileio) (btrfs pool, or
        a write-through thin vDisk).
      type: str
      returned: when present
    write_through:
      description: Whether the vDisk is exported write-through (always V(true) in a btrfs pool).
      type: bool
      returned: when present
    path:
      description: The backing on the storage host - a thin volume (C(/dev/VG/vdisk-NAME)) or a file.
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

    def __init__(self, pool):
        self.spec, self.path, self.backstore = pool.spec, pool.path, pool.backstore
        self.write_through_choice = pool.write_through_choice
        self.backstore_for, self.write_through_of = pool.backstore_for, pool.write_through_of

    def get(self, name):
        return None

    def list(self):
        return []

    def round_size(self, size_bytes):
        return size_bytes

    def check_room(self, name, size_bytes):
        pass

    def snapshots_of(self, name):
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
            'migrate_from': {'type': 'str'},
            'write_through': {'type': 'bool'},
            # Suboptions, so Ansible converts each item's values ("no" -> False).
            'vdisks': {'type': 'list', 'elements': 'dict', 'options': {
                'name': {'type': 'str', 'required': True},
                'size': {'type': 'str'},
                'filesystem': FILESYSTEM,
                'partitions': PARTITIONS,
                'state': STATE,
                'force': {'type': 'bool'},
                'migrate_from': {'type': 'str'},
                'write_through': {'type': 'bool'},
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
        try:
            return module.run_command(argv, handle_exceptions=False)
        except OSError as exc:  # a tool not installed yet (check mode on a fresh host)
            return 127, '', '%s: %s' % (argv[0], exc)

    def open_old_pool(spec):
        old = open_pool(spec, run)
        old.check()
        return old

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
            pool = _NoPoolYet(pool)
        if lio.HAS_RTSLIB:
            root = lio.open_root()
            with host_lock():
                result = converge(module, pool, root, items, open_old_pool)
        else:
            module.warn('python3-rtslib-fb is not installed yet: planning as if LIO were empty (check mode)')
            result = converge(module, pool, None, items, open_old_pool)
    except (ValidationError, PoolError, lio.LIOError, LockTimeout, lio.ChangeFailed) as exc:
        module.fail_json(msg=str(exc))
    except (lio.rtslib_errors()[0], OSError) as exc:
        module.fail_json(msg='changing LIO or the pool failed: %s' % exc, exception=traceback.format_exc())
    module.exit_json(**result)


def _no_backstore(name):
    return None


def converge(module, pool, root, items, open_old_pool=None):
    params = module.params
    if root is None:
        exports, lookup = {}, _no_backstore
    else:
        exports, lookup = lio_backstore.exports_index(root), lio_backstore.lookup
    # Plan everything first: a run with one bad item changes nothing.
    steps, unlisted = vdisk_resource.plan(pool, items, exports, lookup, purge=params['purge'],
                                          purge_force=params['force'], open_pool=open_old_pool)
    if unlisted:
        module.warn('vDisks in pool %s that the list does not name (kept; force=true with purge=true deletes '
                    'them and their data): %s' % (pool.spec, ', '.join(unlisted)))
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
