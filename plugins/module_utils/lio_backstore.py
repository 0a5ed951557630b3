# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""LIO backstores for vDisks: create, converge, resize and delete.

A vDisk is exported as a fileio storage object named after it, with the WWN
the pool stored for it, write-back off and AIO off:
- write-back (buffered I/O) loses fsync'd data on a crash;
- with write-back off the initiator sees no write cache and never flushes,
  and LIO's AIO path submits every write O_DIRECT *without* O_DSYNC (only FUA
  writes get it), so acknowledged writes - and the sparse file's extent
  allocations - sit in volatile state. The storage_host lab scenario caught
  this: XFS on the initiator found its log behind its metadata after a
  power-cut of the storage host. The synchronous path honours O_DSYNC on
  every write.
"""

from __future__ import annotations

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio


def lookup(name):
    """The fileio storage object called ``name``, or None."""
    not_in_cfs = lio.rtslib_errors()[1]
    try:
        return lio.rtslib.FileIOStorageObject(name)
    except (not_in_cfs, lio.rtslib_errors()[0]):
        return None


def exports_index(root):
    """{storage object name: [{'target', 'tpg', 'lun'}]} for fileio, in one walk of configfs.

    rtslib's StorageObject.attached_luns walks every target again for each
    object: at 200 vDisks that is 200 walks.
    """
    index = {}
    for target in root.targets:
        for tpg in target.tpgs:
            for lun in tpg.luns:
                so = lun.storage_object
                if so.plugin == 'fileio':
                    index.setdefault(so.name, []).append(
                        {'target': target.wwn, 'tpg': tpg.tag, 'lun': lun.lun})
    return index


def drift(so, record):
    """Why the live storage object differs from the vDisk record (empty: it matches)."""
    reasons = []
    if so.udev_path != record.backing:
        reasons.append('backing file %s instead of %s' % (so.udev_path, record.backing))
    if so.size != record.size_bytes:
        reasons.append('size %d instead of %d' % (so.size, record.size_bytes))
    if so.write_back:
        reasons.append('write-back cache on (unsafe: loses fsync\'d writes on a crash)')
    if so.aio:
        reasons.append('AIO on (unsafe without a write cache: writes are not synchronous)')
    return reasons


def create(record):
    return lio.rtslib.FileIOStorageObject(
        record.name, dev=record.backing, size=record.size_bytes, wwn=record.wwn,
        write_back=False, aio=False)


def recreate(so, record):
    """Replace ``so`` by one matching ``record``, keeping its WWN and every LUN mapping.

    LIO cannot resize or reconfigure a fileio object in place: delete it with
    its LUNs, create it again with the same name and WWN, and put back each LUN
    (same TPG and LUN id) and each initiator's mapped LUN (same id, same
    write-protect). The initiator keeps seeing the same disk. If any step
    fails (the delete too: rtslib removes mapped LUNs, LUNs and the object one
    by one), the old object is put back the same way before the error is raised.
    """
    old = {'name': so.name, 'dev': so.udev_path, 'size': so.size, 'wwn': so.wwn}
    saved = []
    for lun in so.attached_luns:
        mapped = [(m.parent_nodeacl, m.mapped_lun, m.write_protect)
                  for acl in lun.parent_tpg.node_acls for m in acl.mapped_luns
                  if m.tpg_lun.lun == lun.lun]
        saved.append((lun.parent_tpg, lun.lun, mapped))
    try:
        so.delete()
        return _relink(create(record), saved)
    except BaseException:
        _put_back(old, saved)
        raise


def _put_back(old, saved):
    live = lookup(old['name'])
    if live is not None and (live.udev_path, live.size, live.wwn) != (old['dev'], old['size'], old['wwn']):
        live.delete()  # the new object, made before the failure
        live = None
    if live is None:
        live = lio.rtslib.FileIOStorageObject(old['name'], dev=old['dev'], size=old['size'], wwn=old['wwn'],
                                              write_back=False, aio=False)
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
