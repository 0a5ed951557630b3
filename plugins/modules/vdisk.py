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
attributes:
  check_mode:
    support: full
  diff_mode:
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
      - 1-64 letters, digits, V(.), V(_) or V(-); no V(/) and no V(..).
      - Mutually exclusive with O(vdisks).
    type: str
  size:
    description:
      - Size of the vDisk, with a unit (V(10G), V(512MiB), V(1T); K, M, G and T are binary). Rounded up to a whole MiB.
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
    suboptions:
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
      - Mutually exclusive with O(name).
    type: list
    elements: dict
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
"""

RETURN = r"""
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

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio, lio_backstore
from ansible_collections.clusterducks.vdisk.plugins.module_utils.locking import LockTimeout, host_lock
from ansible_collections.clusterducks.vdisk.plugins.module_utils.pool import (
    PoolError,
    normalize_layout,
    open_pool,
)
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import (
    ValidationError,
    check_name,
    format_size,
    parse_size,
    resource_items,
)

ITEM_KEYS = ('name', 'size', 'filesystem', 'partitions', 'state', 'force')
PARTITION_SPEC = {'size': {'type': 'str'}, 'filesystem': {'type': 'str', 'choices': ['xfs', 'ext4', 'none'],
                                                          'default': 'xfs'}}


def requested_items(params):
    """The vDisks asked for, each with every key, module-level defaults applied."""
    raw = resource_items(params, 'name', 'vdisks', ITEM_KEYS)
    items, seen = [], set()
    for n, item in enumerate(raw, 1):
        spec = {
            'name': check_name(item.get('name'), 'vDisk name'),
            'size': item.get('size'),
            'filesystem': item.get('filesystem'),
            'partitions': item.get('partitions'),
            'state': item.get('state') or params['state'],
            'force': params['force'] if item.get('force') is None else bool(item['force']),
        }
        if spec['state'] not in ('present', 'absent'):
            raise ValidationError('vDisk %s: state must be present or absent' % spec['name'])
        if spec['name'] in seen:
            raise ValidationError('vDisk %s is listed twice' % spec['name'])
        seen.add(spec['name'])
        if spec['size'] is not None:
            spec['size_bytes'] = parse_size(spec['size'], 'vDisk %s size' % spec['name'])
        if spec['partitions'] is not None:
            parts = []
            for p in spec['partitions']:
                if not isinstance(p, dict) or set(p) - set(PARTITION_SPEC):
                    raise ValidationError('vDisk %s: each partition is a dictionary of size and filesystem'
                                          % spec['name'])
                parts.append({'size': p.get('size'), 'filesystem': p.get('filesystem') or 'xfs'})
            spec['partitions'] = parts
        items.append(spec)
    return items


def plan_present(spec, record, so, pool):
    """The actions that bring one vDisk to ``spec``; raises ValidationError for what must not happen."""
    name = spec['name']
    if record is None:
        if spec.get('size_bytes') is None:
            raise ValidationError('vDisk %s does not exist: size is required to create it' % name)
        filesystem = spec['filesystem'] or ('none' if spec['partitions'] else 'xfs')
        spec['layout'] = normalize_layout(spec['size_bytes'], filesystem, spec['partitions'] or [])
        spec['filesystem_final'] = filesystem
        return ['created', 'exported']
    if spec['filesystem'] is not None and spec['filesystem'] != record.filesystem:
        raise ValidationError('vDisk %s was made with filesystem %s; it is never reformatted (asked for %s)'
                              % (name, record.filesystem, spec['filesystem']))
    if spec['partitions'] is not None:
        wanted = normalize_layout(spec.get('size_bytes') or record.size_bytes, 'none', spec['partitions'])
        have = [(p['size_bytes'], p['filesystem']) for p in record.partitions]
        if [(p['size_bytes'], p['filesystem']) for p in wanted] != have and not (
                spec['partitions'][-1]['size'] in (None, '') and
                [(p['size_bytes'], p['filesystem']) for p in wanted[:-1]] == have[:-1]):
            raise ValidationError('vDisk %s was partitioned at creation as %s; its layout is never changed'
                                  % (name, ', '.join('%d: %s %s' % (p['number'], format_size(p['size_bytes']),
                                                                    p['filesystem']) for p in record.partitions)))
    actions = []
    size = spec.get('size_bytes')
    if size is not None and size != record.size_bytes:
        if size < record.size_bytes:
            raise ValidationError('vDisk %s is %s: shrinking it to %s is refused (it would destroy data)'
                                  % (name, format_size(record.size_bytes), format_size(size)))
        actions.append('grown')
    if so is None:
        actions.append('exported')
    elif 'grown' in actions or lio_backstore.drift(so, record):
        actions.append('reexported')
    return actions


def describe(spec, record, exports, actions):
    result = {'name': spec['name'], 'state': spec['state'], 'exported_by': exports, 'actions': actions}
    if record is not None and spec['state'] == 'present':
        result.update(record.to_dict())
    return result


def run_module():
    module = AnsibleModule(
        argument_spec={
            'pool': {'type': 'str', 'required': True},
            'name': {'type': 'str'},
            'size': {'type': 'str'},
            'filesystem': {'type': 'str', 'choices': ['xfs', 'ext4', 'none']},
            'partitions': {'type': 'list', 'elements': 'dict', 'options': PARTITION_SPEC},
            'state': {'type': 'str', 'choices': ['present', 'absent'], 'default': 'present'},
            'force': {'type': 'bool', 'default': False},
            'vdisks': {'type': 'list', 'elements': 'dict'},
        },
        mutually_exclusive=[('name', 'vdisks')],
        required_one_of=[('name', 'vdisks')],
        supports_check_mode=True,
    )
    lio.require_rtslib(module)

    def run(argv):
        return module.run_command(argv)

    try:
        items = requested_items(module.params)
        pool = open_pool(module.params['pool'], run)
        pool.check()
        root = lio.open_root()
        with host_lock():
            result = converge(module, pool, root, items)
    except (ValidationError, PoolError, lio.LIOError, LockTimeout) as exc:
        module.fail_json(msg=str(exc))
    except (lio.rtslib_errors()[0], OSError) as exc:
        module.fail_json(msg='changing LIO or the pool failed: %s' % exc, exception=traceback.format_exc())
    module.exit_json(**result)


def converge(module, pool, root, items):
    exports = lio_backstore.exports_index(root)
    plans = []
    # Plan everything first: a run with one bad item changes nothing.
    for spec in items:
        record = pool.get(spec['name'])
        so = lio_backstore.lookup(spec['name']) if record is not None else None
        if spec['state'] == 'present':
            if record is None and lio_backstore.lookup(spec['name']) is not None:
                raise ValidationError('a fileio backstore called %s exists but is not a vDisk of pool %s: '
                                      'refusing to take it over' % (spec['name'], pool.path))
            actions = plan_present(spec, record, so, pool)
        elif record is None:
            actions = []
        elif exports.get(spec['name']) and not spec['force']:
            raise ValidationError('vDisk %s is exported by %s: set force=true to delete it and its data'
                                  % (spec['name'], ', '.join(e['target'] for e in exports[spec['name']])))
        else:
            actions = ['deleted']
        plans.append((spec, record, so, actions))

    before, after, results = {}, {}, []
    lio_changed = False
    for spec, record, so, actions in plans:
        name = spec['name']
        before[name] = summary(record, exports.get(name))
        if actions and not module.check_mode:
            record, lio_changed_here = apply(pool, spec, record, so, actions)
            lio_changed = lio_changed or lio_changed_here
        if spec['state'] == 'absent':
            after[name] = None
            results.append(describe(spec, None, [] if actions else exports.get(name, []), actions))
        else:
            if record is None:  # check mode, to be created
                after[name] = {'size_bytes': spec['size_bytes'], 'filesystem': spec['filesystem_final'],
                               'partitions': spec['layout'], 'wwn': '(new)', 'exported_by': []}
            else:
                if module.check_mode and 'grown' in actions:
                    record.size_bytes = spec['size_bytes']
                after[name] = summary(record, exports.get(name))
            results.append(describe(spec, record, exports.get(name, []), actions))
    if lio_changed:
        lio.save_config(root)

    changed = any(r['actions'] for r in results)
    result = {'changed': changed, 'vdisks': results}
    if module.params['name'] is not None:
        result['vdisk'] = results[0]
    if module._diff:
        result['diff'] = {'before': {k: v for k, v in before.items() if v is not None},
                          'after': {k: v for k, v in after.items() if v is not None}}
    return result


def summary(record, exports):
    if record is None:
        return None
    return {'size_bytes': record.size_bytes, 'filesystem': record.filesystem, 'partitions': record.partitions,
            'wwn': record.wwn, 'exported_by': exports or []}


def apply(pool, spec, record, so, actions):
    """Carry out the planned actions for one vDisk; returns (record, LIO changed)."""
    if 'deleted' in actions:
        if so is not None:
            lio_backstore.delete(so)
        pool.delete(record)
        return None, so is not None
    if 'created' in actions:
        record = pool.create(spec['name'], spec['size_bytes'], spec['filesystem_final'], spec['layout'])
        try:
            lio_backstore.create(record)
        except BaseException:
            pool.delete(record)  # leave nothing half-made behind
            raise
        return record, True
    old_size = record.size_bytes
    if 'grown' in actions:
        pool.grow(record, spec['size_bytes'])
    try:
        if 'exported' in actions:
            lio_backstore.create(record)
        elif 'reexported' in actions:
            lio_backstore.recreate(so, record)
    except BaseException:
        if 'grown' in actions:
            # Nothing could have been written past the old end: the export failed.
            pool.undo_grow(record, old_size)
        raise
    return record, 'exported' in actions or 'reexported' in actions


def main():
    run_module()


if __name__ == '__main__':
    main()
