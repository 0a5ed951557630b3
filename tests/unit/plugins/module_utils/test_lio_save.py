# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""lio.save_config: the save file restored at boot is replaced whole or not at all."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio

IQN = 'iqn.2026-11.io.clusterducks:node01'


@pytest.fixture
def host(lio_model):
    lio_model.add_vdisk('a')
    tpg = lio_model.iscsi_target(IQN)
    acl = lio_model.rtslib.NodeACL(tpg, 'iqn.2026-11.io.clusterducks:device.node01')
    acl.chap_userid, acl.chap_password = 'node01', 'chap-secret-0001'
    return lio_model


def root(host):
    return host.rtslib.RTSRoot()


def files(path):
    return sorted(os.listdir(os.path.dirname(path)))


def test_writes_mode_0600_through_a_renamed_temporary_file(host, monkeypatch):
    path = host.root_module.default_save_file
    renames = []
    real_rename = os.rename

    def rename(src, dst):
        # The temporary file is complete and private before it replaces the old one.
        assert stat.S_IMODE(os.stat(src).st_mode) == 0o600
        renames.append((json.load(open(src)), dst))
        real_rename(src, dst)

    monkeypatch.setattr(os, 'rename', rename)
    old_umask = os.umask(0)  # O_CREAT's mode alone would give 0666 & ~umask
    try:
        assert lio.save_config(root(host)) == path
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert renames == [(host.dump(), path)]
    assert json.load(open(path)) == host.dump()
    assert files(path) == ['saveconfig.json']


def test_short_writes_are_completed(host, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, 'write', lambda fd, data: real_write(fd, bytes(data[:7])))
    path = lio.save_config(root(host))
    assert json.load(open(path)) == host.dump()


@pytest.mark.parametrize('breaks', ['dump', 'fsync', 'rename'])
def test_a_failure_leaves_the_old_file_and_no_temporary_copy(host, monkeypatch, breaks):
    path = lio.save_config(root(host))
    with open(path) as f:
        old = f.read()
    host.rtslib.NodeACL(host.rtslib.TPG(host.rtslib.Target(host.rtslib.FabricModule('iscsi'), IQN), 1),
                        'iqn.2026-11.io.clusterducks:device.node02')

    def broken(*args, **kwargs):
        raise OSError(28, 'No space left on device')

    r = root(host)
    if breaks == 'dump':
        monkeypatch.setattr(r, 'dump', broken)
    else:
        monkeypatch.setattr(os, breaks, broken)
    with pytest.raises(OSError):
        lio.save_config(r)
    with open(path) as f:
        assert f.read() == old
    assert files(path) == ['saveconfig.json']


@pytest.mark.parametrize('before, after', [(0o640, 0o640), (0o600, 0o600), (0o644, 0o640), (0o660, 0o640)])
def test_a_rewrite_keeps_the_group_and_its_read_bit_never_more(host, before, after):
    # The storage API reads the save file as a member of its group, with no
    # capability: a rewrite by a module must not take that away, nor widen it.
    path = lio.save_config(root(host))
    os.chown(path, -1, 4242)
    os.chmod(path, before)
    old_ino = os.stat(path).st_ino
    lio.save_config(root(host))
    info = os.stat(path)
    assert info.st_ino != old_ino  # replaced, not rewritten in place
    assert (stat.S_IMODE(info.st_mode), info.st_gid) == (after, 4242)


def test_a_new_save_file_is_root_only(host):
    path = host.root_module.default_save_file
    assert not os.path.exists(path)
    lio.save_config(root(host))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
