# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import atomic


def test_writes_with_its_mode_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        path = atomic.write_atomic(str(tmp_path / 'secret'), 'x' * 10)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert open(path).read() == 'x' * 10
    atomic.write_json_atomic(str(tmp_path / 'meta.json'), {'b': 1, 'a': 2}, mode=0o644)
    assert stat.S_IMODE(os.stat(tmp_path / 'meta.json').st_mode) == 0o644
    assert open(tmp_path / 'meta.json').read() == '{\n  "a": 2,\n  "b": 1\n}\n'


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / 'saveconfig.json'
    path.write_text('old')

    def broken_fsync(fd):
        raise OSError(5, 'Input/output error')

    monkeypatch.setattr(os, 'fsync', broken_fsync)
    with pytest.raises(OSError):
        atomic.write_atomic(str(path), 'new')
    assert path.read_text() == 'old'
    assert os.listdir(tmp_path) == ['saveconfig.json']


def test_sets_the_group_before_the_rename(tmp_path, monkeypatch):
    seen = []
    real_rename = os.rename

    def rename(src, dst):
        info = os.stat(src)
        seen.append((stat.S_IMODE(info.st_mode), info.st_gid))
        real_rename(src, dst)

    monkeypatch.setattr(os, 'rename', rename)
    path = atomic.write_atomic(str(tmp_path / 'saveconfig.json'), '{}', mode=0o640, gid=4242)
    assert seen == [(0o640, 4242)]
    assert os.stat(path).st_gid == 4242
