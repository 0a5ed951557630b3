#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot
short_description: Create, delete and roll back snapshots of vDisks in an LVM thin pool
version_added: 0.1.0
description:
  - Takes a snapshot of a vDisk, deletes one, or rolls a vDisk back to one.
  - "A snapshot is a thin device of the vDisk's LVM thin pool made by dm-thin itself (C(create_snap)) while the vDisk
    is suspended for a few milliseconds: it is crash-consistent for that vDisk - it holds every write the initiator
    had acknowledged when it was taken, like a power-cut would. There is no consistency group across vDisks. See
    C(docs/snapshots.md)."
  - Snapshots are not logical volumes. C(lvs) shows the space they use in the pool, not them; this module,
    M(clusterducks.vdisk.snapshot_info) and C(clusterducks-vdisk-snapshots list) on the storage host list them.
  - The M(clusterducks.vdisk.storage_host) role installs a schedule that takes snapshots every minute or more and
    prunes them by retention. This module's snapshots are manual ones - the schedule never deletes them.
  - The collection's C(docs/snapshots.md) explains the schedule, retention, the free-space guard and monitoring,
    with the measurements.
  - "O(state=rolled_back) gives the vDisk exactly the snapshot's content, with the same WWN and the same LUNs and
    initiator mappings. Its content before the rollback is kept first as a snapshot named
    C(pre-rollback-YYYYMMDDTHHMMSSZ), so a rollback can itself be undone. The vDisk's backstore is recreated (LIO
    keeps the old device open): an initiator must log in again, or rescan, to see the new content."
  - Runs hold the same host lock as the other storage modules and the snapshot round.
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
      - Check mode validates everything a real run would (the vDisk, the snapshot, logged-in initiators) and reports
        the change without making it.
  diff_mode:
    support: full
  idempotent:
    support: partial
    details:
      - V(present) and V(absent) are idempotent. V(rolled_back) is an action, like a restore - it rolls back every
        time it runs.
options:
  pool:
    description:
      - The LVM thin pool holding the vDisk, V(lvm-thin:VG/POOL). Snapshots need an LVM thin pool; a vDisk of a btrfs
        pool can be moved into one with the O(clusterducks.vdisk.vdisk#module:migrate_from) option.
    type: str
    required: true
  vdisk:
    description: The vDisk's name.
    type: str
    required: true
  name:
    description:
      - The snapshot's name - 1-63 letters, digits, V(.), V(_) or V(-), starting with a letter or digit (the rule of
        vDisk names).
      - Names starting with C(auto-) belong to the schedule and C(pre-rollback-) to rollbacks; this module refuses to
        create them but may delete or roll back to them.
    type: str
    required: true
  state:
    description:
      - V(present) takes the snapshot if the vDisk has none of that name.
      - V(absent) deletes it if it is there.
      - V(rolled_back) gives the vDisk the snapshot's content.
    type: str
    choices: [present, absent, rolled_back]
    default: present
  force:
    description:
      - With O(state=rolled_back), roll back even while an initiator is logged in to a target that exports the vDisk.
        Its I/O waits for two short suspends and none fails, but its cache holds content that is no longer on the
        disk - make it log out first whenever possible, and log in again (or drop its caches) afterwards.
    type: bool
    default: false
requirements:
  - lvm2 and python3-rtslib-fb on the storage host (the M(clusterducks.vdisk.storage_host) role installs them)
notes:
  - A rolled-back vDisk keeps its current size when the snapshot is older than a grow; the space past the snapshot's
    end reads as zeros, and a partitioned vDisk gets its GPT backup header moved to the end as after a grow.
seealso:
  - module: clusterducks.vdisk.snapshot_info
  - module: clusterducks.vdisk.vdisk
"""

EXAMPLES = r"""
- name: Snapshot a device's vDisk before an upgrade
  clusterducks.vdisk.snapshot:
    pool: lvm-thin:vdisks/pool
    vdisk: node01
    name: before-upgrade

- name: Roll it back (the device logged out first)
  clusterducks.vdisk.snapshot:
    pool: lvm-thin:vdisks/pool
    vdisk: node01
    name: before-upgrade
    state: rolled_back

- name: Delete the snapshot
  clusterducks.vdisk.snapshot:
    pool: lvm-thin:vdisks/pool
    vdisk: node01
    name: before-upgrade
    state: absent
"""

RETURN = r"""
snapshot:
  description:
    - The snapshot as it is after the run (before it, for V(absent)); none if there was nothing to delete.
    - In check mode, a new snapshot as it would be, with C(created) V((new)).
  returned: success
  type: dict
  contains:
    vdisk:
      description: The vDisk's name.
      type: str
      sample: node01
    name:
      description: The snapshot's name.
      type: str
      sample: before-upgrade
    kind:
      description: V(manual), V(scheduled), V(pre-rollback) or V(clone).
      type: str
      sample: manual
    created:
      description: When it was taken (UTC, ISO 8601).
      type: str
      sample: '2026-11-27T02:10:00Z'
    age_seconds:
      description: Its age.
      type: int
      sample: 42
    size_bytes:
      description: The vDisk's size when it was taken.
      type: int
      sample: 1073741824
    wwn:
      description: The WWN of the vDisk it was taken of.
      type: str
    thin_id:
      description:
        - Its dm-thin device id in the pool. Scheduled snapshots of a vDisk that no write reached in between share
          one (see the storage_host role's C(storage_host_snapshot_share_unchanged)).
      type: int
      sample: 8388610
kept_as:
  description: With V(rolled_back), the snapshot that holds the vDisk's content from before the rollback.
  returned: when a rollback ran
  type: str
  sample: pre-rollback-20261127T021000Z
logged_in:
  description: With V(rolled_back), the initiators that were logged in (only with O(force=true)).
  returned: when a rollback ran or was planned
  type: list
  elements: str
"""

import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio, lio_backstore, rules, thin_snapshots
from ansible_collections.clusterducks.vdisk.plugins.module_utils.devmapper import DeviceMapperError
from ansible_collections.clusterducks.vdisk.plugins.module_utils.locking import LockTimeout, host_lock
from ansible_collections.clusterducks.vdisk.plugins.module_utils.pool import LvmThinPool, PoolError, open_pool
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import ValidationError

RESERVED_PREFIXES = ('auto-', 'pre-rollback-')


def _checked(module, func, value, what):
    try:
        return func(value, what)
    except rules.RuleError as exc:
        module.fail_json(msg=str(exc))


def run_module():
    module = AnsibleModule(
        argument_spec={
            'pool': {'type': 'str', 'required': True},
            'vdisk': {'type': 'str', 'required': True},
            'name': {'type': 'str', 'required': True},
            'state': {'type': 'str', 'choices': ['present', 'absent', 'rolled_back'], 'default': 'present'},
            'force': {'type': 'bool', 'default': False},
        },
        supports_check_mode=True,
    )
    params = module.params
    _checked(module, rules.check_vdisk, params['vdisk'], 'vDisk name')
    _checked(module, rules.check_snapshot, params['name'], 'snapshot name')
    if params['state'] == 'present' and params['name'].startswith(RESERVED_PREFIXES):
        module.fail_json(msg='snapshot names starting with %s belong to the schedule and to rollbacks: choose another '
                             'name' % ' or '.join(RESERVED_PREFIXES))
    if params['state'] == 'rolled_back':
        lio.require_rtslib(module)

    def run(argv):
        try:
            return module.run_command(argv, handle_exceptions=False)
        except OSError as exc:
            return 127, '', '%s: %s' % (argv[0], exc)

    try:
        pool = open_pool(params['pool'], run)
        if not isinstance(pool, LvmThinPool):
            raise thin_snapshots.SnapshotError(
                'snapshots need an LVM thin pool (lvm-thin:VG/POOL); %s is a btrfs pool: move the vDisk with the '
                'vdisk module\'s migrate_from first' % params['pool'])
        pool.check()
        with host_lock():
            snapshots = thin_snapshots.ThinSnapshots(params['pool'], run)
            try:
                result = converge(module, pool, snapshots, run)
            finally:
                snapshots.close()
    except (ValidationError, PoolError, thin_snapshots.SnapshotError, LockTimeout, lio.LIOError,
            lio.ChangeFailed) as exc:
        module.fail_json(msg=str(exc))
    except (DeviceMapperError, OSError) as exc:
        module.fail_json(msg='changing the snapshot failed: %s' % exc, exception=traceback.format_exc())
    module.exit_json(**result)


def converge(module, pool, snapshots, run):
    params = module.params
    vdisk, name, state = params['vdisk'], params['name'], params['state']
    record = pool.get(vdisk)
    if record is None:
        raise thin_snapshots.SnapshotError('vDisk %s is not in pool %s' % (vdisk, params['pool']))
    now = time.time()
    current = next((s for s in snapshots.list(vdisk) if s.name == name), None)
    before = current.to_dict(now) if current else None
    key = '%s@%s' % (vdisk, name)
    result = {'changed': False, 'snapshot': before}
    if state == 'present':
        if current is None:
            if snapshots.get(vdisk, name) is not None:
                raise thin_snapshots.SnapshotError(
                    'the name %s is taken by a snapshot of an earlier vDisk %s (another WWN): delete it with the '
                    'clusterducks-vdisk-snapshots command or choose another name' % (name, vdisk))
            result['changed'] = True
            # Check mode: the snapshot as it would be (diff mode shows it).
            result['snapshot'] = {'vdisk': vdisk, 'name': name, 'kind': 'manual', 'created': '(new)',
                                  'size_bytes': record.size_bytes, 'wwn': record.wwn}
            if not module.check_mode:
                created, failures = snapshots.create([vdisk], name, 'manual')
                if failures:
                    raise thin_snapshots.SnapshotError(failures[vdisk])
                result['snapshot'] = created[vdisk].to_dict(time.time())
    elif state == 'absent':
        if current is not None:
            result['changed'] = True
            if not module.check_mode:
                _done, failures = snapshots.delete([current])
                if failures:
                    raise thin_snapshots.SnapshotError(list(failures.values())[0])
    else:
        if current is None:
            names = [s.name for s in snapshots.list(vdisk)]
            raise thin_snapshots.SnapshotError('vDisk %s has no snapshot %s (it has: %s)'
                                               % (vdisk, name, ', '.join(names) or 'none'))
        result.update(rollback(module, pool, snapshots, record, current, run))
        result['changed'] = True
    if module._diff and result['changed']:
        after = None if state == 'absent' else result['snapshot']
        result['diff'] = {'before': {key: before} if before else {}, 'after': {key: after} if after else {}}
    return result


def rollback(module, pool, snapshots, record, snap, run):
    lio.open_root()  # fails clearly when configfs or the target modules are missing
    so = lio_backstore.lookup(record.name)
    if so is not None and not lio_backstore.owns(so, record):
        so = None  # another pool's vDisk of that name: not this vDisk's export
    sessions = lio_backstore.active_sessions(so) if so is not None else []
    if sessions and not module.params['force']:
        raise thin_snapshots.SnapshotError(
            'initiators are logged in to a target that exports vDisk %s: %s. Log them out first (their cache holds '
            'the current content), or set force: true' % (record.name, ', '.join(sessions)))
    out = {'logged_in': sessions}
    if module.check_mode:
        return out
    kept = 'pre-rollback-' + time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())
    # An exported vDisk stays active and open: LIO's backstore, LUNs and
    # sessions are left alone, the device-mapper device under them is pointed
    # at the snapshot's content (thin_snapshots.rollback). Recreating the
    # backstore instead left a logged-in initiator a moment with no LUN 0, and
    # its disk became LIO's 32 KiB read-only placeholder until a rescan (seen
    # in the lab, under fio).
    snapshots.rollback(record.name, snap.name, kept)
    lv = '%s/%s' % (pool.vg, pool.lv_name(record.name))
    rc, stdout, stderr = run(['lvchange', '--activate', 'y', lv])  # an inactive vDisk is active again after it
    if rc != 0:
        raise thin_snapshots.SnapshotError('lvchange --activate y %s failed: %s' % (lv, (stderr or stdout).strip()))
    if record.partitions and snap.size_bytes != record.size_bytes:
        pool.move_gpt_backup(record.backing)
    snapshots.forget()
    out['kept_as'] = kept
    return out


def main():
    run_module()


if __name__ == '__main__':
    main()
