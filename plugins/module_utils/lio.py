# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one place in this collection that talks to rtslib-fb (LIO).

Modules import this file instead of rtslib so that the library's renames and
its side effects (configfs mount, dbroot, kernel module loading) are handled
once.
"""

from __future__ import annotations

import json
import os
import stat
import traceback

from ansible_collections.clusterducks.vdisk.plugins.module_utils import resource_run
from ansible_collections.clusterducks.vdisk.plugins.module_utils.atomic import write_atomic

RTSLIB_IMPORT_ERROR = None
try:
    # Debian 12 ships rtslib-fb 2.1.75 as ``rtslib_fb``; newer releases are
    # ``rtslib`` (keeping a ``rtslib_fb`` alias). Record the first failure:
    # it names the package Debian users have to install.
    import rtslib_fb as rtslib
    from rtslib_fb import root as rtslib_root
except ImportError:
    RTSLIB_IMPORT_ERROR = traceback.format_exc()
    try:
        import rtslib
        from rtslib import root as rtslib_root
    except ImportError:
        rtslib = None
        rtslib_root = None

HAS_RTSLIB = rtslib is not None

# Upstream default; Debian patches the library to /etc/rtslib-fb-target.
UPSTREAM_DBROOT = '/etc/target'
UPSTREAM_SAVE_FILE = '/etc/target/saveconfig.json'

# Attribute/parameter names that must never be reported (defence in depth:
# LIO keeps CHAP secrets under auth/, not attrib/ or param/).
_SECRET_MARKERS = ('password', 'secret')


def require_rtslib(module):
    """Fail the module with install advice when rtslib-fb cannot be imported."""
    if not HAS_RTSLIB:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib('rtslib-fb') + ' On Debian, install the python3-rtslib-fb package.',
                         exception=RTSLIB_IMPORT_ERROR)


class LIOError(Exception):
    """LIO is unavailable or rtslib failed; the message is user-facing."""


def rtslib_errors():
    """Return the exception classes rtslib raises, tolerant of the rename."""
    base = rtslib.RTSLibError
    # 2.2.0 renamed RTSLibNotInCFS -> RTSLibNotInCFSError.
    not_in_cfs = getattr(rtslib, 'RTSLibNotInCFSError', None) or getattr(rtslib, 'RTSLibNotInCFS', base)
    return base, not_in_cfs


def dbroot_dir():
    """Directory RTSRoot() wants to point the kernel's dbroot at."""
    return getattr(rtslib.RTSRoot, '_preferred_dbroot', UPSTREAM_DBROOT)


def default_save_file(root=None):
    """Path of the save file restored at boot (Debian: /etc/rtslib-fb-target/saveconfig.json)."""
    path = getattr(root, 'default_save_file', None) if root is not None else None
    return path or getattr(rtslib_root, 'default_save_file', None) or UPSTREAM_SAVE_FILE


def open_root():
    """Open the LIO configfs root; raise LIOError with a clear message if LIO is unavailable."""
    rtslib_error = rtslib_errors()[0]
    # RTSRoot() fails unless its dbroot directory exists.
    dbroot = dbroot_dir()
    if not os.path.isdir(dbroot):
        try:
            os.makedirs(dbroot)
            os.chmod(dbroot, 0o755)  # makedirs' mode is filtered by umask
        except OSError as exc:
            raise LIOError('cannot create LIO dbroot directory %s: %s' % (dbroot, exc))
    try:
        # Mounts configfs and loads target_core_mod if needed.
        return rtslib.RTSRoot()
    except (rtslib_error, OSError) as exc:
        raise LIOError(
            'LIO is not available (configfs mounted at /sys/kernel/config and '
            'kernel module target_core_mod are required): %s' % exc)


def _get(obj, name, default=None):
    """Read an rtslib property that may be missing on this object or kernel."""
    try:
        return getattr(obj, name)
    except (AttributeError, OSError, ValueError, rtslib_errors()[0]):
        return default


def _is_set(obj, name):
    """True if an auth value (e.g. chap_userid) is set; never return the value."""
    return bool(_get(obj, name))


def _named_values(obj, lister, getter):
    """Read all readable attributes/parameters of a node into a dict of strings."""
    result = {}
    names = _get(obj, lister)
    if names is None:
        return result
    try:
        names = names(readable=True)
    except (OSError, rtslib_errors()[0]):
        return result
    for name in sorted(names):
        if any(marker in name.lower() for marker in _SECRET_MARKERS):
            continue
        try:
            result[name] = getattr(obj, getter)(name)
        except (OSError, rtslib_errors()[0]):
            continue
    return result


def logged_in(acl):
    """Whether the ACL's initiator has a session now (configfs acls/*/info)."""
    try:
        return bool(acl.session)
    except (OSError, rtslib_errors()[0]):
        return False


def storage_object_info(so):
    """Describe a storage object (backstore)."""
    size = _get(so, 'size')
    return {
        'name': so.name,
        'plugin': so.plugin,
        'wwn': _get(so, 'wwn'),
        'size': int(size) if size is not None else None,
        'udev_path': _get(so, 'udev_path') or None,
        # write_back/aio exist for fileio (write_back also for block).
        'write_back': _get(so, 'write_back'),
        'aio': _get(so, 'aio'),
        'status': _get(so, 'status'),
        # The I/O settings the initiator sees (write cache, queue depth, max
        # sectors, unmap, XCOPY): what the data path was chosen by.
        'attributes': _named_values(so, 'list_attributes', 'get_attribute'),
    }


def _lun_info(lun):
    so = lun.storage_object
    return {
        'lun': lun.lun,
        'storage_object': {'name': so.name, 'plugin': so.plugin},
    }


def _mapped_lun_info(mlun):
    tpg_lun = _get(mlun, 'tpg_lun')
    return {
        'mapped_lun': mlun.mapped_lun,
        'tpg_lun': tpg_lun.lun if tpg_lun is not None else None,
        'write_protect': _get(mlun, 'write_protect'),
    }


def _node_acl_info(acl):
    return {
        'node_wwn': acl.node_wwn,
        'mapped_luns': sorted((_mapped_lun_info(m) for m in acl.mapped_luns), key=lambda m: m['mapped_lun']),
        # Only whether CHAP is configured: userids and passwords stay out of results.
        'chap': _is_set(acl, 'chap_userid'),
        'chap_mutual': _is_set(acl, 'chap_mutual_userid'),
    }


def _tpg_info(tpg):
    return {
        'tag': tpg.tag,
        'enable': _get(tpg, 'enable'),
        'portals': sorted(({'ip': p.ip_address, 'port': p.port} for p in tpg.network_portals),
                          key=lambda p: (p['ip'], p['port'])),
        'luns': sorted((_lun_info(lun) for lun in tpg.luns), key=lambda lun: lun['lun']),
        'node_acls': sorted((_node_acl_info(a) for a in tpg.node_acls), key=lambda a: a['node_wwn']),
        'chap': _is_set(tpg, 'chap_userid'),
        'chap_mutual': _is_set(tpg, 'chap_mutual_userid'),
        'attributes': _named_values(tpg, 'list_attributes', 'get_attribute'),
        'parameters': _named_values(tpg, 'list_parameters', 'get_parameter'),
    }


def target_info(target):
    """Describe a target with its TPGs."""
    return {
        'wwn': target.wwn,
        'fabric': target.fabric_module.name,
        'tpgs': sorted((_tpg_info(t) for t in target.tpgs), key=lambda t: t['tag']),
    }


def iscsi_targets(root):
    """The iSCSI fabric's targets (root.targets walks every fabric)."""
    return [t for t in root.targets if t.fabric_module.name == 'iscsi']


def lookup_target(wwn, fabric='iscsi'):
    """Return the existing Target ``wwn`` or None, without creating anything."""
    rtslib_error, not_in_cfs = rtslib_errors()
    fabric_module = rtslib.FabricModule(fabric)
    # Target() would modprobe the fabric's kernel module; an unloaded
    # fabric cannot hold the target, so answer without loading it.
    if not fabric_module.exists:
        return None
    try:
        return rtslib.Target(fabric_module, wwn, mode='lookup')
    except (not_in_cfs, rtslib_error):
        # Not present, or not a valid WWN for this fabric (cannot exist either).
        return None


def gather(root, targets=None):
    """Return the running LIO configuration as plain data, without secrets.

    With ``targets`` (a list of iSCSI IQNs) only those targets are looked up
    directly (listing walks all of configfs, which is slow at scale), and
    ``storage_objects`` is limited to the ones their LUNs use.
    """
    result = {
        'fabric_modules': sorted(fm.name for fm in root.fabric_modules if fm.exists),
        'save_file': default_save_file(root),
        'missing_targets': [],
    }

    if targets is None:
        found = list(root.targets)
        storage_objects = list(root.storage_objects)
    else:
        found = []
        for wwn in dict.fromkeys(targets):  # dedupe, keep order
            target = lookup_target(wwn)
            if target is None:
                result['missing_targets'].append(wwn)
            else:
                found.append(target)
        storage_objects = []
        seen = set()
        for target in found:
            for tpg in target.tpgs:
                for lun in tpg.luns:
                    so = lun.storage_object
                    if (so.plugin, so.name) not in seen:
                        seen.add((so.plugin, so.name))
                        storage_objects.append(so)

    result['storage_objects'] = sorted((storage_object_info(so) for so in storage_objects),
                                       key=lambda so: (so['plugin'], so['name']))
    result['targets'] = sorted((target_info(t) for t in found), key=lambda t: (t['fabric'], t['wwn']))
    return result


def save_config(root, path=None):
    """Write the running configuration to the save file restored at boot.

    rtslib's save_to_file() copies its temporary file over the old one, so a
    crash mid-copy can leave a truncated file and no targets at the next boot.
    atomic.py writes a temporary file (0600: it holds CHAP secrets), fsyncs it,
    renames it over the old one and fsyncs the directory.

    A save file that its group may read keeps its group and that bit (never
    more than 0640): an admin who let a service's group read it keeps that
    access across the modules' saves.
    """
    path = path or default_save_file(root)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    mode, gid = 0o600, -1
    try:
        info = os.stat(path)
        mode, gid = 0o600 | (stat.S_IMODE(info.st_mode) & 0o040), info.st_gid
    except FileNotFoundError:
        pass
    data = json.dumps(root.dump(), sort_keys=True, indent=2) + '\n'
    return write_atomic(path, data, mode=mode, gid=gid)


# A failed run's error (resource_run is the one plan/apply/save skeleton).
ChangeFailed = resource_run.ChangeFailed


def apply_changes(root, steps, subject='LIO'):
    """Apply ``steps`` ((label, do, undo)) and save LIO's configuration once; see resource_run.apply."""
    resource_run.apply(steps, lambda: save_config(root), default_save_file(root), subject)
