# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Input checks of the modules: names, sizes and IQNs by the shared rules
(rules.py, which the API applies too), CHAP secrets, ports, list items.

Every check raises ValidationError with a message that names the offending
value, so a module can fail before it changes anything.
"""

from __future__ import annotations

import re

from ansible_collections.clusterducks.vdisk.plugins.module_utils import rules


class ValidationError(ValueError):
    """Bad user input; the message is shown as the module's failure."""


def _checked(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except rules.RuleError as exc:
        raise ValidationError(str(exc))


def parse_size(value, what='size'):
    """'10G', '512MiB', '1.5T', 1073741824 -> bytes (K/M/G/T binary, KB/MB/GB/TB decimal)."""
    return _checked(rules.parse_size, value, what)


format_size = rules.format_size
SIZE_ALIGN = rules.SIZE_ALIGN


def check_name(name, what='name'):
    """A vDisk name (the rule the API applies too)."""
    return _checked(rules.check_vdisk, name, what)


def check_iqn(iqn, what='IQN'):
    """A target or initiator name: iqn., eui. or naa. (the rule the API applies too)."""
    return _checked(rules.check_iqn, iqn, what, allow_eui_naa=True)


# CHAP: RFC 7143 wants secrets of at least 12 bytes (96 bits); Windows' initiator
# accepts 12-16 characters and LIO at most 255. Whitespace, quotes and '\' break
# iscsiadm and configfs writes, so only visible ASCII without those.
_CHAP_USER_RE = re.compile(r'[A-Za-z0-9.:_@-]{1,255}')
_CHAP_SECRET_RE = re.compile(r'[!#-&(-\[\]-~]{12,255}')


def check_chap(userid, password, what):
    if not isinstance(userid, str) or not _CHAP_USER_RE.fullmatch(userid):
        raise ValidationError('%s: user name must be 1-255 characters of letters, digits and . : _ @ -' % what)
    # The secret itself never goes into a message.
    if not isinstance(password, str) or not _CHAP_SECRET_RE.fullmatch(password):
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
        return [dict((k, params.get(k)) for k in keys)]
    items = []
    for n, item in enumerate(params[many], 1):
        if not isinstance(item, dict):
            raise ValidationError('%s item %d is not a dictionary' % (many, n))
        unknown = set(item) - set(keys)
        if unknown:
            raise ValidationError('%s item %d: unknown keys %s' % (many, n, ', '.join(sorted(unknown))))
        items.append(item)
    return items
