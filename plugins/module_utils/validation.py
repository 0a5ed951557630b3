# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Input checks shared by the modules: names, sizes, IQNs, CHAP secrets.

Every check raises ValidationError with a message that names the offending
value, so a module can fail before it changes anything.
"""

from __future__ import annotations

import re


class ValidationError(ValueError):
    """Bad user input; the message is shown as the module's failure."""


_SIZE_UNITS = {
    '': 1, 'b': 1,
    'k': 1 << 10, 'kb': 1000, 'kib': 1 << 10,
    'm': 1 << 20, 'mb': 1000 ** 2, 'mib': 1 << 20,
    'g': 1 << 30, 'gb': 1000 ** 3, 'gib': 1 << 30,
    't': 1 << 40, 'tb': 1000 ** 4, 'tib': 1 << 40,
}
_SIZE_RE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$')

# Sizes are rounded to whole MiB: partition alignment and every filesystem
# tool work in MiB, and a size that differs by a few bytes is not a change.
SIZE_ALIGN = 1 << 20


def parse_size(value, what='size'):
    """'10G', '512MiB', '1.5T', 1073741824 -> bytes (K/M/G/T are binary)."""
    if isinstance(value, bool):
        raise ValidationError('%s: %r is not a size' % (what, value))
    if isinstance(value, int):
        number, unit = value, ''
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise ValidationError('%s: %r is not a size (examples: 10G, 512MiB, 1T)' % (what, value))
        number, unit = float(match.group(1)), match.group(2).lower()
    if unit not in _SIZE_UNITS:
        raise ValidationError('%s: unknown unit %r in %r (use K, M, G, T, KiB, MB, ...)' % (what, unit, value))
    size = int(number * _SIZE_UNITS[unit])
    if size <= 0:
        raise ValidationError('%s: %r must be larger than zero' % (what, value))
    return -(-size // SIZE_ALIGN) * SIZE_ALIGN


def format_size(size):
    for unit, factor in (('T', 1 << 40), ('G', 1 << 30), ('M', 1 << 20), ('K', 1 << 10)):
        if size >= factor and size % factor == 0:
            return '%d%s' % (size // factor, unit)
    return '%dB' % size


# vDisk names become a directory, a LIO backstore name and part of configfs
# paths: keep them to characters that are safe in all three.
_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')


def check_name(name, what='name'):
    if not isinstance(name, str) or not _NAME_RE.match(name) or '..' in name:
        raise ValidationError(
            '%s %r is invalid: use 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit, '
            'no "/" and no ".."' % (what, name))
    return name


# RFC 3720 section 3.2.6.3: iqn.YYYY-MM.reversed.domain[:anything], eui.16HEX,
# naa.16 or 32 HEX. LIO accepts at most 223 bytes, lower case in practice.
_IQN_RE = re.compile(r'^iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*'
                     r'(:[a-z0-9.:_-]+)?$')
_EUI_RE = re.compile(r'^eui\.[0-9A-Fa-f]{16}$')
_NAA_RE = re.compile(r'^naa\.([0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})$')


def check_iqn(iqn, what='IQN'):
    if not isinstance(iqn, str) or len(iqn) > 223 or not (
            _IQN_RE.match(iqn) or _EUI_RE.match(iqn) or _NAA_RE.match(iqn)):
        raise ValidationError(
            '%s %r is invalid: expected iqn.YYYY-MM.reversed.domain[:name] in lower case '
            '(RFC 3720), eui.<16 hex> or naa.<16|32 hex>, at most 223 characters' % (what, iqn))
    return iqn


# CHAP: RFC 7143 wants secrets of at least 12 bytes (96 bits); Windows' initiator
# accepts 12-16 characters and LIO at most 255. Whitespace, quotes and '\' break
# iscsiadm and configfs writes, so only visible ASCII without those.
_CHAP_USER_RE = re.compile(r'^[A-Za-z0-9.:_@-]{1,255}$')
_CHAP_SECRET_RE = re.compile(r'^[!#-&(-\[\]-~]{12,255}$')


def check_chap(userid, password, what):
    if not isinstance(userid, str) or not _CHAP_USER_RE.match(userid):
        raise ValidationError('%s: user name must be 1-255 characters of letters, digits and . : _ @ -' % what)
    # The secret itself never goes into a message.
    if not isinstance(password, str) or not _CHAP_SECRET_RE.match(password):
        raise ValidationError(
            '%s: the secret must be 12 to 255 visible ASCII characters without spaces, quotes or '
            'backslashes (RFC 7143 asks for at least 12; common initiators reject longer than 16 on Windows)'
            % what)


def check_port(port, what='port'):
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValidationError('%s %r is not a TCP port' % (what, port))
    return port


def resource_items(params, single, many, keys):
    """The resources a run asks for: ``params[single]`` with the top-level keys, or the
    dicts in ``params[many]``. Each item is checked to be a dict with known keys only."""
    if params[single] is not None:
        return [dict((k, params[k]) for k in keys)]
    items = []
    for n, item in enumerate(params[many], 1):
        if not isinstance(item, dict):
            raise ValidationError('%s item %d is not a dictionary' % (many, n))
        unknown = set(item) - set(keys)
        if unknown:
            raise ValidationError('%s item %d: unknown keys %s' % (many, n, ', '.join(sorted(unknown))))
        items.append(item)
    return items
