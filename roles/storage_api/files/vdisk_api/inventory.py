# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the storage host exports: the LIO save file and the vDisk pool.

The save file (rtslib's RTSRoot.dump(), restored at boot) is the persistent
LIO configuration, so it is what a device will find after the storage host
reboots. Both sources are re-read only when their mtime/size change.
"""

from __future__ import annotations

import json
import os
import threading

from vdisk_api import pool_layout, rules


class ResolveError(Exception):
    """An assignment cannot be turned into a boot record; the message says why."""


def _file_stamp(path):
    """(mtime, size, inode), None if the file does not exist; OSError otherwise."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def _stamp(path):
    try:
        return _file_stamp(path)
    except OSError:
        return None


class _Cached:
    """A JSON file parsed once per change. Thread-safe enough: the cache is
    replaced as a whole tuple (atomic under the GIL)."""

    def __init__(self, path, parse):
        self.path = path
        self.parse = parse
        self._cache = (None, None)
        self._lock = threading.Lock()

    def get(self):
        try:
            stamp = _file_stamp(self.path)
        except OSError as exc:
            # Not "no targets": a file we may not see (targetcli saveconfig
            # takes the search bit off its directory) is an outage, said so.
            raise ResolveError('cannot read %s: %s' % (self.path, exc))
        cached_stamp, value = self._cache
        if stamp is not None and stamp == cached_stamp:
            return stamp, value
        with self._lock:
            if stamp is None:
                self._cache = (None, None)
                return None, None
            try:
                with open(self.path, encoding='utf-8') as handle:
                    value = self.parse(json.load(handle))
            except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
                raise ResolveError('cannot read %s: %s' % (self.path, exc))
            self._cache = (stamp, value)
            return stamp, value


def _index_lio(dump):
    """Index a saveconfig.json: storage objects by name, exports by name."""
    objects = {}
    for so in dump.get('storage_objects') or []:
        objects.setdefault(so['name'], so)
    targets = {}
    exports = {}  # storage object name -> [(target wwn, tpg dict, lun index)]
    for target in dump.get('targets') or []:
        if target.get('fabric') != 'iscsi':
            continue
        targets[target['wwn']] = target
        for tpg in target.get('tpgs') or []:
            for lun in tpg.get('luns') or []:
                # '/backstores/fileio/NAME'
                name = str(lun.get('storage_object', '')).rsplit('/', 1)[-1]
                exports.setdefault(name, []).append((target['wwn'], tpg, lun['index']))
    return {'objects': objects, 'targets': targets, 'exports': exports}


class Lio:
    def __init__(self, save_file):
        self._file = _Cached(save_file, _index_lio)
        self.path = save_file

    def snapshot(self):
        stamp, index = self._file.get()
        if index is None:
            index = {'objects': {}, 'targets': {}, 'exports': {}}
        return stamp, index


class Pool:
    """The pool's vDisks, read through pool_layout.py: the same reader as the
    modules' pool backend, cached per file change."""

    def __init__(self, pool):
        self.path = pool_layout.metadata_dir(pool)  # a btrfs path or lvm-thin:VG/POOL
        self._files = {}

    def _file(self, name):
        cached = self._files.get(name)
        if cached is None:
            directory = os.path.join(self.path, name)
            cached = self._files[name] = _Cached(pool_layout.metadata_path(self.path, name),
                                                 lambda data: pool_layout.parse_metadata(data, directory))
        return cached

    def metadata_path(self, name):
        """Where a vDisk's vdisk.json is (or would be)."""
        rules.check_vdisk(name)  # never build a path from an unchecked name
        return self._file(name).path

    def get(self, name):
        """(stamp, metadata) or (None, None) if there is no such vDisk."""
        rules.check_vdisk(name)  # never build a path from an unchecked name
        return self._file(name).get()

    def names(self):
        return pool_layout.names(self.path, rules.VDISK_RE.fullmatch)


def vdisk_info(name, meta, lio_index, assigned_to):
    """Describe a vDisk for the management API (no secrets)."""
    so = lio_index['objects'].get(name)
    exports = []
    for wwn, tpg, lun in lio_index['exports'].get(name, []):
        exports.append({
            'target': wwn,
            'tpg': tpg.get('tag'),
            'lun': lun,
            'enabled': bool(tpg.get('enable', True)),
            'initiators': sorted(acl['node_wwn'] for acl in tpg.get('node_acls') or []
                                 if any(m.get('tpg_lun') == lun for m in acl.get('mapped_luns') or [])),
        })
    return {
        'name': name,
        'wwn': (so or {}).get('wwn') or meta.get('wwn'),
        'size_bytes': meta.get('size_bytes'),
        'filesystem': meta.get('filesystem'),
        'partitions': meta.get('partitions'),
        # Stored only when true (vdisk module): a vDisk written before the option is write-back.
        'write_through': bool(meta.get('write_through', False)),
        'storage_object': ({'plugin': so.get('plugin'), 'dev': so.get('dev')} if so else None),
        'exports': exports,
        'assigned_to': assigned_to,
    }


def resolve_target(vdisk, target, lio_index):
    """The target IQN exporting ``vdisk``: the given one (checked) or the only one."""
    if vdisk not in lio_index['objects']:
        raise ResolveError('vDisk %s has no LIO storage object in the saved LIO configuration' % vdisk)
    wwns = sorted(set(wwn for wwn, _tpg, _lun in lio_index['exports'].get(vdisk, [])))
    if target is not None:
        if target not in lio_index['targets']:
            raise ResolveError('target %s does not exist in the saved LIO configuration' % target)
        if target not in wwns:
            raise ResolveError('target %s does not export vDisk %s (exported by: %s)'
                               % (target, vdisk, ', '.join(wwns) or 'no target'))
        return target
    if not wwns:
        raise ResolveError('vDisk %s is not exported by any iSCSI target (no LUN uses it)' % vdisk)
    if len(wwns) > 1:
        raise ResolveError('vDisk %s is exported by several targets (%s); set target' % (vdisk, ', '.join(wwns)))
    return wwns[0]


def _portals(tpg, advertised):
    result = []
    for portal in tpg.get('portals') or []:
        ip, port = str(portal.get('ip_address')).strip('[]'), portal.get('port', 3260)
        if ip in ('0.0.0.0', '::'):
            if not advertised:
                raise ResolveError('the target portal listens on %s and the API has no advertised_portals '
                                   'configured; a device cannot log in to a wildcard address' % ip)
            for entry in advertised:
                result.append(rules.format_portal(*rules.split_portal(entry, port)))
        else:
            result.append(rules.format_portal(ip, port))
    return list(dict.fromkeys(result))


def resolve_boot(assignment, vdisk_meta, lio_index, advertised):
    """Everything a device needs to attach its vDisk, from one assignment.

    Only the assignment's own target/TPG/ACL is read, so the result can only
    ever hold this device's credentials.
    """
    vdisk = assignment['vdisk']
    target_wwn = resolve_target(vdisk, assignment['target'], lio_index)
    initiator = assignment['initiator_iqn']
    so = lio_index['objects'][vdisk]
    problems = []
    for wwn, tpg, tpg_lun in lio_index['exports'].get(vdisk, []):
        if wwn != target_wwn:
            continue
        if not tpg.get('enable', True):
            problems.append('TPG %s is disabled' % tpg.get('tag'))
            continue
        acl = next((a for a in tpg.get('node_acls') or [] if a.get('node_wwn') == initiator), None)
        if acl is None:
            problems.append('TPG %s has no ACL for initiator %s' % (tpg.get('tag'), initiator))
            continue
        mapped = next((m for m in acl.get('mapped_luns') or [] if m.get('tpg_lun') == tpg_lun), None)
        if mapped is None:
            problems.append('the ACL for %s in TPG %s does not map LUN %s' % (initiator, tpg.get('tag'), tpg_lun))
            continue
        portals = _portals(tpg, advertised)
        if not portals:
            problems.append('TPG %s has no network portal' % tpg.get('tag'))
            continue
        return {
            'target_iqn': target_wwn,
            'tpg': tpg.get('tag'),
            'portals': portals,
            'lun': mapped.get('index'),
            'write_protect': bool(mapped.get('write_protect', False)),
            'wwn': so.get('wwn') or vdisk_meta.get('wwn'),
            'chap': ({'userid': acl['chap_userid'], 'password': acl.get('chap_password', '')}
                     if acl.get('chap_userid') else None),
            'chap_mutual': ({'userid': acl['chap_mutual_userid'], 'password': acl.get('chap_mutual_password', '')}
                            if acl.get('chap_mutual_userid') else None),
        }
    raise ResolveError('device could not log in to target %s for vDisk %s: %s'
                       % (target_wwn, vdisk, '; '.join(problems) or 'no usable TPG'))
