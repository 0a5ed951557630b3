# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How a pool keeps a vDisk on disk: <pool>/<name>/vdisk.json beside its backing file.

The one reader of that layout, for both sides: the modules' pool backend
(pool.py) and the storage API (``vdisk_api/pool_layout.py`` is a link to this
file, like rules.py). Standard library only, Python 3.8+.
"""

from __future__ import annotations

import os

METADATA = 'vdisk.json'
BACKING = 'disk.img'


def metadata_path(pool_path, name):
    return os.path.join(pool_path, name, METADATA)


def parse_metadata(data, directory):
    """vdisk.json's content -> the vDisk as plain data; the size is the backing file's (None if it is gone)."""
    if not isinstance(data, dict):
        raise ValueError('not a JSON object')
    backing = os.path.join(directory, os.path.basename(data.get('backing') or BACKING))
    try:
        size = os.stat(backing).st_size
    except OSError:
        size = None
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
    }


def names(pool_path, valid_name):
    """The vDisks of a pool: directories with a name ``valid_name`` accepts that hold metadata."""
    try:
        entries = sorted(os.listdir(pool_path))
    except OSError:
        return []
    return [e for e in entries if valid_name(e) and os.path.isfile(metadata_path(pool_path, e))]
