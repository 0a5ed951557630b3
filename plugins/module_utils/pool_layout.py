# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How a pool keeps a vDisk's metadata: <metadata dir>/<name>/vdisk.json.

A btrfs pool (``/srv/vdisks``) is its own metadata directory and keeps the
backing file beside vdisk.json. An LVM thin pool (``lvm-thin:VG/POOL``) keeps
vdisk.json under /var/lib/clusterducks-vdisk/lvm-thin/VG/POOL and names its
logical volume (``/dev/VG/vdisk-NAME``) in it.

The one reader of that layout, for both sides: the modules' pool backend
(pool.py) and the storage API (``vdisk_api/pool_layout.py`` is a link to this
file, like rules.py). Standard library only, Python 3.8+.
"""

from __future__ import annotations

import os
import stat

METADATA = 'vdisk.json'
BACKING = 'disk.img'
LVM_THIN = 'lvm-thin:'
LVM_THIN_METADATA_ROOT = '/var/lib/clusterducks-vdisk/lvm-thin'


def metadata_dir(pool):
    """Where a pool spec (a btrfs path or ``lvm-thin:VG/POOL``) keeps its vDisks' metadata."""
    if pool.startswith(LVM_THIN):
        vg, _sep, thin_pool = pool[len(LVM_THIN):].partition('/')
        return os.path.join(LVM_THIN_METADATA_ROOT, vg, thin_pool)
    return pool


def metadata_path(pool_dir, name):
    return os.path.join(pool_dir, name, METADATA)


SYS_BLOCK = '/sys/block'


def _sectors(sys_dir):
    with open(os.path.join(sys_dir, 'size')) as f:
        return int(f.read()) * 512  # sysfs counts 512-byte sectors whatever the device's


def _dm_size(path):
    """Size of the logical volume /dev/VG/LV found by its device-mapper name in sysfs.

    The storage API runs with PrivateDevices=yes: it sees no /dev/VG, but it
    can read /sys/block/dm-*/dm/name (VG-LV, with each '-' inside a name doubled).
    """
    parts = path.split('/')
    if len(parts) != 4:
        return None
    wanted = '-'.join(p.replace('-', '--') for p in parts[2:])
    try:
        entries = os.listdir(SYS_BLOCK)
    except OSError:
        return None
    for entry in entries:
        try:
            with open(os.path.join(SYS_BLOCK, entry, 'dm', 'name')) as f:
                if f.read().strip() == wanted:
                    return _sectors(os.path.join(SYS_BLOCK, entry))
        except (OSError, ValueError):
            continue
    return None


def backing_size(path):
    """Size in bytes of a backing file or block device; None if it is gone.

    A block device's st_size is 0: read its size from sysfs (world-readable,
    so the unprivileged storage API can too).
    """
    try:
        st = os.stat(path)
    except OSError:
        return _dm_size(path) if path.startswith('/dev/') else None
    try:
        if not stat.S_ISBLK(st.st_mode):
            return st.st_size
        return _sectors('/sys/dev/block/%d:%d' % (os.major(st.st_rdev), os.minor(st.st_rdev)))
    except (OSError, ValueError):
        return None


def parse_metadata(data, directory):
    """vdisk.json's content -> the vDisk as plain data; the size is the backing's (None if it is gone)."""
    if not isinstance(data, dict):
        raise ValueError('not a JSON object')
    backing = data.get('backing') or BACKING
    if not backing.startswith('/dev/'):
        # A file lives beside its metadata, whatever the JSON says.
        backing = os.path.join(directory, os.path.basename(backing))
    size = backing_size(backing)
    partitions = sorted(({'number': int(p['number']), 'size_bytes': p.get('size_bytes'),
                          'filesystem': p.get('filesystem') or 'none'} for p in data.get('partitions') or []),
                        key=lambda p: p['number'])
    return {
        'name': data.get('name'),
        'wwn': data.get('wwn'),
        'backing': backing,
        'size_bytes': size,
        'filesystem': data.get('filesystem') or 'none',
        'partitions': partitions,
        'created': data.get('created'),
        # Only an LVM thin vDisk has the choice; absent means write-back (the block backstore).
        'write_through': data.get('write_through') is True,
    }


def names(pool_dir, valid_name):
    """The vDisks of a pool: directories with a name ``valid_name`` accepts that hold metadata."""
    try:
        entries = sorted(os.listdir(pool_dir))
    except OSError:
        return []
    return [e for e in entries if valid_name(e) and os.path.isfile(metadata_path(pool_dir, e))]
