# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one set of rules for names, IQNs, sizes and assignments.

Every side checks input with this file, so a value one side accepts is never
refused by another: the modules import it from module_utils, the storage API
as ``vdisk_api/rules.py`` (a link to this file, whose content the storage_api
role installs) and the lab tool by path. Every pattern must match the whole
value (``fullmatch``): ``$`` would let a trailing newline through.
Standard library only, Python 3.8+ (module_utils run on managed hosts).
"""

from __future__ import annotations

import ipaddress
import re

# Hostname-like: '_' is not allowed because the default initiator IQN embeds
# the device id and IQNs (RFC 3722) have no '_'. No '/', no SQL/shell
# metacharacters, so ids are safe in URLs, logs and shell.
DEVICE_RE = re.compile(r'[a-z0-9][a-z0-9.-]{0,62}')
# vDisk names are a pool directory, a LIO storage object name and part of
# configfs paths: 63 characters (a DNS label) of a safe set, never '..'.
VDISK_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,62}')
# RFC 3720 section 3.2.6.3: iqn.YYYY-MM.reversed.domain[:anything], eui.16HEX,
# naa.16HEX. Lower case only: RFC 3722 maps names to lower case and rtslib
# lower-cases what it is given, so an upper-case name would never read back as
# written. Narrowed to what rtslib-fb (2.1.75, utils.normalize_wwn) accepts, so
# a name passes here only if LIO will take it: no '_', a domain of at least two
# labels, naa. only as 16 hex digits starting with 1, 2 or 5.
IQN_RE = re.compile(r'iqn\.[0-9]{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+'
                    r'(:[a-z0-9.:-]+)?')
EUI_RE = re.compile(r'eui\.[0-9a-f]{16}')
NAA_RE = re.compile(r'naa\.[125][0-9a-f]{15}')
MAX_IQN = 223
# Path components the initramfs handles in plain sh without quoting surprises.
_COMPONENT_RE = re.compile(r'[A-Za-z0-9_][A-Za-z0-9._-]*')
MAX_PATH = 255
MAX_MOUNTS = 32
MAX_PARTITION = 128

DEFAULT_IQN_PREFIX = 'iqn.2024-01.org.clusterducks.device'
# An assignment that does not say whether the device builds an overlay root
# gets none: the API has always stored it so; the module sends the same.
OVERLAY_ENABLED_DEFAULT = False

# Sizes: K/M/G/T and KiB.. are binary (as qemu-img, lvcreate and parted read
# them), KB/MB/GB/TB decimal. Rounded up to whole MiB: partition alignment and
# every filesystem tool work in MiB, and a few bytes more is not a change.
SIZE_UNITS = {
    '': 1, 'b': 1,
    'k': 1 << 10, 'kb': 1000, 'kib': 1 << 10,
    'm': 1 << 20, 'mb': 1000 ** 2, 'mib': 1 << 20,
    'g': 1 << 30, 'gb': 1000 ** 3, 'gib': 1 << 30,
    't': 1 << 40, 'tb': 1000 ** 4, 'tib': 1 << 40,
}
_SIZE_RE = re.compile(r'\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*')
SIZE_ALIGN = 1 << 20


class RuleError(ValueError):
    """Invalid assignment input; ``field`` names the offending option."""

    def __init__(self, message, field=None):
        super(RuleError, self).__init__(message)
        self.field = field


def _full(pattern, value):
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def check_device(device):
    if not _full(DEVICE_RE, device):
        raise RuleError('device id %r is invalid: use 1-63 characters a-z, 0-9, "." and "-", '
                        'starting with a letter or digit' % (device,), 'device')
    return device


def check_vdisk(name, what='vDisk name'):
    if not _full(VDISK_RE, name) or '..' in name:
        raise RuleError('%s %r is invalid: use 1-63 characters A-Z, a-z, 0-9, ".", "_" and "-", '
                        'starting with a letter or digit; no "/" and no ".."' % (what, name), 'vdisk')
    return name


def check_snapshot(name, what='snapshot name'):
    """A snapshot's name: the rule of vDisk names (scheduled ones are auto-YYYYMMDDTHHMMSSZ)."""
    if not _full(VDISK_RE, name) or '..' in name:
        raise RuleError('%s %r is invalid: use 1-63 characters A-Z, a-z, 0-9, ".", "_" and "-", '
                        'starting with a letter or digit; no "/" and no ".."' % (what, name), 'snapshot')
    return name


def check_iqn(iqn, field, allow_eui_naa=False):
    """An iSCSI name. Targets may also be eui./naa. names; initiators of devices are iqn. names."""
    ok = isinstance(iqn, str) and len(iqn) <= MAX_IQN and (
        _full(IQN_RE, iqn) or (allow_eui_naa and (_full(EUI_RE, iqn) or _full(NAA_RE, iqn))))
    if not ok:
        raise RuleError('%s %r is not a valid iSCSI qualified name: expected iqn.YYYY-MM.reversed.domain[:name] '
                        'in lower case (RFC 3720)%s, '
                        'at most %d characters' % (field, iqn, ', eui.<16 hex> or naa.<16 hex>'
                                                   if allow_eui_naa else '', MAX_IQN), field)
    return iqn


def split_portal(text, default_port=3260):
    """'10.0.0.1', '10.0.0.1:3261', 'fd00::10', '[fd00::10]', '[fd00::10]:3261' -> (ip, port).

    IPv6 with a port must be bracketed (RFC 3986): 'fd00::10:3261' is an address.
    """
    text = str(text).strip()
    port = default_port
    if text.startswith('['):
        host, sep, rest = text[1:].partition(']')
        if not sep or (rest and not rest.startswith(':')):
            raise RuleError('portal %r: expected [IPv6]:PORT' % text, 'portal')
        if rest:
            port = rest[1:]
    elif text.count(':') == 1:
        host, port = text.split(':')
    else:
        host = text
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise RuleError('portal %r: %r is not an IP address' % (text, host), 'portal')
    if text.startswith('[') and ip.version != 6:
        raise RuleError('portal %r: brackets are for IPv6 addresses' % text, 'portal')
    if isinstance(port, str) and not (port.isascii() and port.isdigit()):
        raise RuleError('portal %r: port %r is not a number' % (text, port), 'portal')
    port = int(port)
    if not 1 <= port <= 65535:
        raise RuleError('portal %r: port %d is not 1-65535' % (text, port), 'portal')
    return str(ip), port


def format_portal(ip, port):
    """The portal as iscsiadm and the boot record write it: IPv6 in brackets."""
    ip = str(ip).strip('[]')
    return '[%s]:%d' % (ip, int(port)) if ':' in ip else '%s:%d' % (ip, int(port))


def parse_size(value, what='size'):
    """'10G', '512MiB', '1.5T', 1073741824 -> bytes, rounded up to whole MiB."""
    if isinstance(value, bool):
        raise RuleError('%s: %r is not a size' % (what, value), 'size')
    if isinstance(value, int):
        number, unit = value, ''
    else:
        match = _SIZE_RE.fullmatch(str(value))
        if not match:
            raise RuleError('%s: %r is not a size (examples: 10G, 512MiB, 1T)' % (what, value), 'size')
        number, unit = float(match.group(1)), match.group(2).lower()
    if unit not in SIZE_UNITS:
        raise RuleError('%s: unknown unit %r in %r (use K, M, G, T, KiB, MB, ...)' % (what, unit, value), 'size')
    size = int(number * SIZE_UNITS[unit])
    if size <= 0:
        raise RuleError('%s: %r must be larger than zero' % (what, value), 'size')
    return -(-size // SIZE_ALIGN) * SIZE_ALIGN


def format_size(size):
    for unit, factor in (('T', 1 << 40), ('G', 1 << 30), ('M', 1 << 20), ('K', 1 << 10)):
        if size >= factor and size % factor == 0:
            return '%d%s' % (size // factor, unit)
    return '%dB' % size


def default_initiator_iqn(device, prefix=DEFAULT_IQN_PREFIX):
    """The initiator IQN a device uses unless one is given: a shared golden
    image cannot carry one per device, so it learns this one at boot."""
    return '%s:%s' % (prefix, device)


def _components(path, field, absolute):
    if not isinstance(path, str) or not path:
        raise RuleError('%s must be a non-empty string' % field, field)
    if len(path) > MAX_PATH:
        raise RuleError('%s is longer than %d characters' % (field, MAX_PATH), field)
    if absolute and not path.startswith('/'):
        raise RuleError('%s %r must be an absolute path' % (field, path), field)
    if not absolute and path.startswith('/'):
        raise RuleError('%s %r must be relative, without the leading "/" (as in the seed: "data" mounts on /data)'
                        % (field, path), field)
    body = path[1:] if absolute else path
    if body == '':
        return []
    parts = body.split('/')
    for part in parts:
        if part in ('.', '..'):
            raise RuleError('%s %r must not contain "." or ".." components' % (field, path), field)
        if part == '':
            raise RuleError('%s %r must not contain empty components ("//" or a trailing "/")' % (field, path), field)
        if not _full(_COMPONENT_RE, part):
            raise RuleError('%s %r: components may only use A-Z, a-z, 0-9, ".", "_" and "-"' % (field, path), field)
    return parts


def _inside(parts, parent):
    """True if path ``parts`` is ``parent`` or below it."""
    return parts[:len(parent)] == parent


def normalize_mounts(mounts):
    """Check the partition -> path map; return it with canonical string keys.

    Keys are partition numbers as in sdbX, 0 for a whole-disk filesystem;
    values are paths without the leading slash.
    """
    if mounts is None:
        return {}
    if not isinstance(mounts, dict):
        raise RuleError('mounts must be a map of partition number to path', 'mounts')
    if len(mounts) > MAX_MOUNTS:
        raise RuleError('at most %d mounts are allowed' % MAX_MOUNTS, 'mounts')
    result = {}
    seen_paths = {}
    for key, path in mounts.items():
        text = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
        if not isinstance(text, str) or not text.isdigit() or not text.isascii():
            raise RuleError('mounts key %r is not a partition number (the X in sdbX, 0 for the whole disk)'
                            % (key,), 'mounts')
        number = int(text)
        if number > MAX_PARTITION:
            raise RuleError('mounts key %r: partition numbers go up to %d' % (key, MAX_PARTITION), 'mounts')
        canonical = str(number)
        if canonical in result:
            raise RuleError('mounts key %r repeats partition %d' % (key, number), 'mounts')
        parts = _components(path, 'mounts[%s]' % canonical, absolute=False)
        joined = '/'.join(parts)
        if joined in seen_paths:
            raise RuleError('mount path %r is used by partitions %s and %s; paths must be unique'
                            % (joined, seen_paths[joined], canonical), 'mounts')
        seen_paths[joined] = canonical
        result[canonical] = joined
    if '0' in result and len(result) > 1:
        raise RuleError('mounts: partition 0 means a whole-disk filesystem, which excludes partitions 1..N',
                        'mounts')
    return dict(sorted(result.items(), key=lambda kv: (kv[1].count('/'), kv[1])))


def _mount_of(parts, mount_parts):
    """The partition key whose mountpoint holds ``parts`` (deepest wins)."""
    best = None
    for key, mparts in mount_parts.items():
        if _inside(parts, mparts) and (best is None or len(mparts) > len(mount_parts[best])):
            best = key
    return best


def normalize_overlay(overlay, mounts):
    """Check overlayfs settings against the (normalized) mounts."""
    overlay = dict(overlay or {})
    unknown = set(overlay) - {'enabled', 'lower', 'upper', 'work'}
    if unknown:
        raise RuleError('overlayfs has unknown keys: %s' % ', '.join(sorted(unknown)), 'overlayfs')
    enabled = overlay.get('enabled', OVERLAY_ENABLED_DEFAULT)
    if not isinstance(enabled, bool):
        raise RuleError('overlayfs.enabled must be a boolean', 'overlayfs')
    lower = overlay.get('lower') or '/'
    result = {'enabled': enabled, 'lower': lower, 'upper': overlay.get('upper'), 'work': overlay.get('work')}
    lower_parts = _components(lower, 'overlayfs.lower', absolute=True)
    paths = {}
    for name in ('upper', 'work'):
        if result[name] is not None:
            paths[name] = _components(result[name], 'overlayfs.' + name, absolute=True)
    if not enabled:
        return result
    for name in ('upper', 'work'):
        if name not in paths:
            raise RuleError('overlayfs.%s is required when overlayfs is enabled' % name, 'overlayfs')
    mount_parts = dict((key, path.split('/')) for key, path in mounts.items())
    owners = {}
    for name in ('upper', 'work'):
        owner = _mount_of(paths[name], mount_parts)
        if owner is None:
            raise RuleError('overlayfs.%s %r is not on a mounted vDisk path (mounts: %s)'
                            % (name, result[name], ', '.join('/' + p for p in mounts.values()) or 'none'),
                            'overlayfs')
        if paths[name] == mount_parts[owner]:
            raise RuleError('overlayfs.%s %r must be a directory below the mountpoint, not the mountpoint itself'
                            % (name, result[name]), 'overlayfs')
        owners[name] = owner
    if owners['upper'] != owners['work']:
        raise RuleError('overlayfs.upper %r and overlayfs.work %r must be on the same filesystem '
                        '(they are on partitions %s and %s); overlayfs requires it'
                        % (result['upper'], result['work'], owners['upper'], owners['work']), 'overlayfs')
    for name in ('upper', 'work'):
        if _inside(lower_parts, paths[name]):
            raise RuleError('overlayfs.lower %r must not be overlayfs.%s %r or inside it'
                            % (lower, name, result[name]), 'overlayfs')
    if _inside(paths['upper'], paths['work']) or _inside(paths['work'], paths['upper']):
        raise RuleError('overlayfs.upper %r and overlayfs.work %r must not be inside one another'
                        % (result['upper'], result['work']), 'overlayfs')
    return result


def check_partitions(mounts, vdisk):
    """Every mounted partition must exist on the vDisk and carry a filesystem.

    ``vdisk`` is the pool's metadata: {"name", "filesystem", "partitions": [{"number", "filesystem"}]}.
    """
    name = vdisk.get('name')
    partitions = dict((int(p['number']), p) for p in vdisk.get('partitions') or [])
    for key in mounts:
        number = int(key)
        if number == 0:
            if partitions:
                raise RuleError('mounts: vDisk %s is partitioned (partitions %s), so it has no whole-disk '
                                'filesystem (key 0)' % (name, ', '.join(str(n) for n in sorted(partitions))),
                                'mounts')
            if (vdisk.get('filesystem') or 'none') == 'none':
                raise RuleError('mounts: vDisk %s has no whole-disk filesystem (key 0)' % name, 'mounts')
            continue
        if number not in partitions:
            raise RuleError('mounts: vDisk %s has no partition %d (it has: %s)'
                            % (name, number, ', '.join(str(n) for n in sorted(partitions)) or 'none'), 'mounts')
        if (partitions[number].get('filesystem') or 'none') == 'none':
            raise RuleError('mounts: partition %d of vDisk %s has no filesystem' % (number, name), 'mounts')


def normalize_assignment(data, iqn_prefix=DEFAULT_IQN_PREFIX):
    """Validate an assignment document (without looking anything up).

    Returns the canonical form: every key present, defaults filled in.
    """
    if not isinstance(data, dict):
        raise RuleError('an assignment must be a JSON object')
    allowed = {'device', 'vdisk', 'target', 'initiator_iqn', 'overlayfs', 'mounts', 'frozen'}
    unknown = set(data) - allowed
    if unknown:
        raise RuleError('unknown assignment fields: %s' % ', '.join(sorted(unknown)))
    device = check_device(data.get('device'))
    if data.get('vdisk') is None:
        raise RuleError('vdisk is required', 'vdisk')
    vdisk = check_vdisk(data.get('vdisk'))
    target = data.get('target')
    if target is not None:
        check_iqn(target, 'target', allow_eui_naa=True)
    initiator = data.get('initiator_iqn')
    if initiator is None:
        initiator = default_initiator_iqn(device, iqn_prefix)
    check_iqn(initiator, 'initiator_iqn')
    frozen = data.get('frozen', True)
    if frozen is None:
        frozen = True
    if not isinstance(frozen, bool):
        raise RuleError('frozen must be a boolean', 'frozen')
    mounts = normalize_mounts(data.get('mounts'))
    overlay = data.get('overlayfs')
    if overlay is not None and not isinstance(overlay, dict):
        raise RuleError('overlayfs must be an object', 'overlayfs')
    overlay = normalize_overlay(overlay, mounts)
    return {
        'device': device,
        'vdisk': vdisk,
        'target': target,
        'initiator_iqn': initiator,
        'overlayfs': overlay,
        'mounts': mounts,
        'frozen': frozen,
    }
