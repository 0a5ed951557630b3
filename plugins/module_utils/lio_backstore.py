# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""LIO backstores for vDisks: create, converge, resize and delete.

A vDisk is exported as a storage object named after it, with the WWN the pool
stored for it, of the plugin its pool gives (``record.backstore``):

- ``block`` (LVM thin volumes, the default path). Write cache, flush and FUA
  are the device's own, so the initiator's flushes reach the disk (measured:
  no fsync'd record lost in power-cuts). Thin provisioning emulation is on
  (emulate_tpu, emulate_tpws), so the device's discards reach the pool and give
  space back. LIO reads a block backstore's size from its device: growing is
  the pool's lvextend and nothing here.
- ``fileio`` (btrfs pools, and LVM thin vDisks with ``write_through``),
  write-back off and AIO off:
  - write-back (buffered I/O) loses fsync'd data on a crash;
  - with write-back off the initiator sees no write cache and never flushes,
    and LIO's AIO path submits every write O_DIRECT *without* O_DSYNC (only FUA
    writes get it), so acknowledged writes - and the sparse file's extent
    allocations - sit in volatile state. The storage_host lab scenario caught
    this: XFS on the initiator found its log behind its metadata after a
    power-cut of the storage host. The synchronous path honours O_DSYNC on
    every write.
  LIO cannot resize a fileio object on a file: growing recreates it
  (``recreate``). On a block device (a write-through thin volume) LIO reads
  the device's size, as for ``block``.

  Why write-through exists for thin volumes: a block backstore shows the
  initiator a write cache, and a storage host that dies after completing a
  write into a new thin chunk (its mapping not yet committed) answers the
  initiator's flush after it restarts with success; the write is gone
  (measured: benchmarks/data_path.py --restart-probe). The fileio export's
  O_DSYNC makes the pool commit before each write completes.
"""

from __future__ import annotations

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio

PLUGINS = ('block', 'fileio')
# Set on every block backstore: UNMAP and WRITE SAME with UNMAP reach the thin
# pool (docs/data-path.md: fstrim gave 960 MiB back; LIO's default, 0, gives none).
BLOCK_ATTRIBUTES = {'emulate_tpu': '1', 'emulate_tpws': '1'}


def _classes():
    return {'block': lio.rtslib.BlockStorageObject, 'fileio': lio.rtslib.FileIOStorageObject}


def lookup(name):
    """The vDisk storage object called ``name`` (block first, then fileio), or None."""
    errors = lio.rtslib_errors()
    for plugin in PLUGINS:
        try:
            return _classes()[plugin](name)
        except (errors[1], errors[0]):
            continue
    return None


def exports_index(root):
    """{storage object name: [{'target', 'tpg', 'lun'}]} for vDisk backstores, in one walk of configfs.

    rtslib's StorageObject.attached_luns walks every target again for each
    object: at 200 vDisks that is 200 walks.
    """
    index = {}
    for target in root.targets:
        for tpg in target.tpgs:
            for lun in tpg.luns:
                so = lun.storage_object
                if so.plugin in PLUGINS:
                    index.setdefault(so.name, []).append(
                        {'target': target.wwn, 'tpg': tpg.tag, 'lun': lun.lun})
    return index


def owns(so, record):
    """Whether the live storage object exports this record's backing (not another pool's vDisk of that name)."""
    return so.udev_path == record.backing


def drift(so, record):
    """Why the live storage object must be recreated to match the vDisk record (empty: it matches)."""
    reasons = []
    if so.plugin != record.backstore:
        reasons.append('a %s backstore instead of %s' % (so.plugin, record.backstore))
    if so.udev_path != record.backing:
        reasons.append('backing %s instead of %s' % (so.udev_path, record.backing))
    if reasons or so.plugin == 'block':
        return reasons
    if not on_device(record) and so.size != record.size_bytes:
        reasons.append('size %d instead of %d' % (so.size, record.size_bytes))
    if so.write_back:
        reasons.append('write-back cache on (unsafe: loses fsync\'d writes on a crash)')
    if so.aio:
        reasons.append('AIO on (unsafe without a write cache: writes are not synchronous)')
    return reasons


def on_device(record):
    """Whether the vDisk's backing is a block device (LIO reads its size from it) rather than a file."""
    return record.backing.startswith('/dev/')


def untuned(so):
    """{attribute: wanted value} a backstore on a thin volume has wrong; set in place, no recreate."""
    if not so.udev_path.startswith('/dev/'):
        return {}
    return dict((k, v) for k, v in sorted(BLOCK_ATTRIBUTES.items()) if str(so.get_attribute(k)) != v)


def tune(so):
    for attribute, value in untuned(so).items():
        so.set_attribute(attribute, value)


def resizes_itself(record):
    """LIO reads a backstore's size from its block device: a grow needs no recreate."""
    return on_device(record)


def _make(plugin, name, dev, size, wwn):
    if plugin == 'block':
        so = lio.rtslib.BlockStorageObject(name, dev=dev, wwn=wwn)
    elif dev.startswith('/dev/'):
        # rtslib ignores a size for a block device: LIO reads the device's.
        so = lio.rtslib.FileIOStorageObject(name, dev=dev, wwn=wwn, write_back=False, aio=False)
    else:
        return lio.rtslib.FileIOStorageObject(name, dev=dev, size=size, wwn=wwn, write_back=False, aio=False)
    try:
        tune(so)
    except BaseException:
        so.delete()
        raise
    return so


def create(record):
    return _make(record.backstore, record.name, record.backing, record.size_bytes, record.wwn)


def active_sessions(so):
    """Initiators logged in to a target that exports ``so`` to them."""
    found = []
    for lun in so.attached_luns:
        for acl in lun.parent_tpg.node_acls:
            if lio.logged_in(acl) and any(m.tpg_lun.lun == lun.lun for m in acl.mapped_luns):
                found.append(acl.node_wwn)
    return sorted(set(found))


def recreate(so, record, between=None):
    """Replace ``so`` by one matching ``record``, keeping its WWN and every LUN mapping.

    Used when LIO cannot change an object in place: a fileio size, unsafe
    settings, or a move to another plugin and backing (``between()`` runs
    while no LUN exports either: the data copy of a move). Delete it with its
    LUNs, create it again with the same name and WWN, and put back each LUN
    (same TPG and LUN id) and each initiator's mapped LUN (same id, same
    write-protect). The initiator keeps seeing the same disk. If any step
    fails (the delete too: rtslib removes mapped LUNs, LUNs and the object one
    by one), the old object is put back the same way before the error is raised.
    """
    old = {'plugin': so.plugin, 'name': so.name, 'dev': so.udev_path, 'size': so.size, 'wwn': so.wwn}
    saved = []
    for lun in so.attached_luns:
        mapped = [(m.parent_nodeacl, m.mapped_lun, m.write_protect)
                  for acl in lun.parent_tpg.node_acls for m in acl.mapped_luns
                  if m.tpg_lun.lun == lun.lun]
        saved.append((lun.parent_tpg, lun.lun, mapped))
    try:
        so.delete()
        if between is not None:
            between()
        return _relink(create(record), saved)
    except BaseException:
        _put_back(old, saved)
        raise


def _put_back(old, saved):
    errors = lio.rtslib_errors()
    for plugin in PLUGINS:
        try:
            live = _classes()[plugin](old['name'])
        except (errors[1], errors[0]):
            continue
        if (live.plugin, live.udev_path, live.wwn) != (old['plugin'], old['dev'], old['wwn']) or (
                plugin == 'fileio' and live.size != old['size']):
            live.delete()  # the new object, made before the failure
    live = lookup(old['name'])
    if live is None:
        live = _make(old['plugin'], old['name'], old['dev'], old['size'], old['wwn'])
    _relink(live, saved)


def _relink(so, saved):
    """Export ``so`` under each saved LUN and mapped LUN; ones a part-way delete left in place are kept."""
    not_in_cfs = lio.rtslib_errors()[1]
    for tpg, lun_id, mapped in saved:
        try:
            lun = lio.rtslib.LUN(tpg, lun_id)
        except not_in_cfs:
            lun = lio.rtslib.LUN(tpg, lun_id, so)
        for acl, mapped_lun, write_protect in mapped:
            try:
                lio.rtslib.MappedLUN(acl, mapped_lun)
            except not_in_cfs:
                lio.rtslib.MappedLUN(acl, mapped_lun, lun, write_protect)
    return so


def delete(so):
    """Delete the storage object and every LUN (and mapped LUN) exporting it."""
    so.delete()
