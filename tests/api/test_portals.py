# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Portals in boot records: IPv6 in brackets, as iscsiadm and the dracut module read them."""

from __future__ import annotations

import sys

import pytest

from apitest import SERVICE_DIR

sys.path.insert(0, SERVICE_DIR)

from vdisk_api import inventory  # noqa: E402  (the service's own package, from the role's files)


@pytest.mark.parametrize('portals,advertised,expected', [
    ([{'ip_address': 'fd00::10', 'port': 3260}], [], ['[fd00::10]:3260']),
    ([{'ip_address': '[fd00::10]', 'port': 3261}], [], ['[fd00::10]:3261']),
    ([{'ip_address': '10.77.0.10', 'port': 3260}], [], ['10.77.0.10:3260']),
    ([{'ip_address': '::', 'port': 3260}], ['fd00::10', '[fd00::11]:3262', '10.77.0.10'],
     ['[fd00::10]:3260', '[fd00::11]:3262', '10.77.0.10:3260']),
    ([{'ip_address': '0.0.0.0', 'port': 3261}], ['10.77.0.10', '10.77.1.10:3262'],
     ['10.77.0.10:3261', '10.77.1.10:3262']),
])
def test_portals_are_bracketed(portals, advertised, expected):
    assert inventory._portals({'portals': portals}, advertised) == expected


def test_a_save_file_the_api_may_not_see_is_an_outage_not_an_empty_lio(monkeypatch, tmp_path):
    """targetcli saveconfig leaves its directory 0600: without the search bit
    the API must say it cannot read the file, not that a vDisk has no target."""
    save = tmp_path / 'saveconfig.json'
    save.write_text('{"storage_objects": [], "targets": []}')
    lio = inventory.Lio(str(save))
    assert lio.snapshot()[1]['objects'] == {}
    real_stat = inventory.os.stat

    def denied(path, *args, **kwargs):
        if str(path) == str(save):
            raise PermissionError(13, 'Permission denied', str(path))
        return real_stat(path, *args, **kwargs)
    monkeypatch.setattr(inventory.os, 'stat', denied)
    with pytest.raises(inventory.ResolveError, match='cannot read .*Permission denied'):
        lio.snapshot()
    # A missing file is a LIO without targets (nothing saved yet).
    monkeypatch.setattr(inventory.os, 'stat', real_stat)
    save.unlink()
    assert lio.snapshot() == (None, {'objects': {}, 'targets': {}, 'exports': {}})
